//! fsvc-server: the unprivileged ext2/3/4 server. (To be written.)

fn main() {}

//! fsvc-mount: the privileged mount helper. (To be written.)

fn main() {}

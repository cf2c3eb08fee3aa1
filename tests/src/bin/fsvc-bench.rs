//! Benchmark command. (To be written.)

fn main() {}

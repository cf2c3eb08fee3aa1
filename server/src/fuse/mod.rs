//! FUSE adapter: the only place that knows FUSE and errno. (To be written.)

//! The sandbox the server enters before it reads one byte of the image. (To be written.)

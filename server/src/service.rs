//! The server side of the helper protocol. (To be written.)

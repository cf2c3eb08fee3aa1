//! Framing and fd passing over `SOCK_SEQPACKET`. (To be written: see lib.rs docs.)

//! fsvc-helper as a library: the parts of the privileged helper that are
//! pure (no IO, no privilege) and shared with its tools and tests: the
//! command line ([`cli`], also the source of the man page) and the user-mount
//! policy file ([`policy_file`]).

pub mod cli;
pub mod policy_file;

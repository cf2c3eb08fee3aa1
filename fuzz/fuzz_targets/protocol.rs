//! Fuzz target `protocol`: arbitrary bytes through the wire decoder both
//! sides use (`fsvc_protocol::decode`: postcard, size limit, trailing bytes,
//! string bounds). Decoding must never panic or allocate without bound; a
//! message it accepts must encode and decode back to itself.

#![no_main]

use fsvc_protocol::{decode, encode, HelperMsg, ServerMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<HelperMsg>(data) {
        let again = encode(&m).expect("re-encode an accepted HelperMsg");
        let back: HelperMsg = decode(&again).expect("decode a re-encoded HelperMsg");
        assert_eq!(m, back);
        let _ = m.fd_count();
    }
    if let Ok(m) = decode::<ServerMsg>(data) {
        let again = encode(&m).expect("re-encode an accepted ServerMsg");
        let back: ServerMsg = decode(&again).expect("decode a re-encoded ServerMsg");
        assert_eq!(m, back);
        let _ = m.fd_count();
    }
});

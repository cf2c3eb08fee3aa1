//! Fuzz target `protocol`: arbitrary bytes decoded as either side's message
//! (postcard, as the wire does). Decoding must never panic or allocate
//! without bound; a decoded message must re-encode and decode to itself.

#![no_main]

use fsvc_protocol::{HelperMsg, ServerMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = postcard::from_bytes::<HelperMsg>(data) {
        let again = postcard::to_stdvec(&m).expect("re-encode HelperMsg");
        let back: HelperMsg = postcard::from_bytes(&again).expect("decode re-encoded HelperMsg");
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
        let _ = m.fd_count();
    }
    if let Ok(m) = postcard::from_bytes::<ServerMsg>(data) {
        let again = postcard::to_stdvec(&m).expect("re-encode ServerMsg");
        let back: ServerMsg = postcard::from_bytes(&again).expect("decode re-encoded ServerMsg");
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
        let _ = m.fd_count();
    }
});

//! Transaction IDs. They are 32-bit and wrap; like the kernel's `tid_gt`
//! and `tid_geq`, comparisons take the signed difference, so an ID up to
//! 2^31 ahead counts as later.

/// Whether transaction `a` is later than `b`.
pub fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Whether transaction `a` is `b` or later.
pub fn at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap() {
        // (a, b, after, at_or_after)
        let cases = [
            (5u32, 4u32, true, true),
            (4, 4, false, true),
            (4, 5, false, false),
            (0, u32::MAX, true, true),
            (u32::MAX, 0, false, false),
            (0x8000_0000, 1, true, true),
            (0x8000_0001, 1, false, false),
        ];
        for (a, b, gt, ge) in cases {
            assert_eq!(after(a, b), gt, "{a} after {b}");
            assert_eq!(at_or_after(a, b), ge, "{a} at or after {b}");
        }
    }
}

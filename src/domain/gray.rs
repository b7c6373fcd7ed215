//! The gray-release bucket, kept bit-for-bit compatible with the original so a
//! device stays in the same bucket for a given gray version after migration.

/// FNV-1a, 32 bit, over the bytes of `device_id` followed by `gray_code_id`.
fn fnv1a_32(parts: &[&str]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    parts
        .iter()
        .flat_map(|p| p.bytes())
        .fold(OFFSET, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(PRIME))
}

/// The device's bucket in 0..100 for this gray version.
pub fn bucket(device_id: &str, gray_code_id: &str) -> u32 {
    fnv1a_32(&[device_id, gray_code_id]) % 100
}

/// `fnv1a_32(device_id + gray_code_id) % 100 < percentage`.
pub fn in_gray(device_id: &str, gray_code_id: &str, percentage: u8) -> bool {
    bucket(device_id, gray_code_id) < u32::from(percentage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_vectors() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv1a_32(&[""]), 0x811c9dc5);
        assert_eq!(fnv1a_32(&["a"]), 0xe40c292c);
        assert_eq!(fnv1a_32(&["foobar"]), 0xbf9cf968);
        assert_eq!(fnv1a_32(&["foo", "bar"]), 0xbf9cf968);
    }

    #[test]
    fn bucket_bounds() {
        assert!(!in_gray("device-1", "code", 0));
        assert!(in_gray("device-1", "code", 100));
        let hits = (0..10_000).filter(|i| in_gray(&format!("d{i}"), "g1", 30)).count();
        assert!((2_700..3_300).contains(&hits), "30% of devices, got {hits}");
    }
}

//! Little-endian integers and MySQL's packed ("length-encoded") integers, as event bodies
//! store them. Callers check lengths first: these read exactly the bytes they are given.

pub(crate) fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(crate) fn read_u56(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..7].copy_from_slice(&b[..7]);
    u64::from_le_bytes(a)
}

/// The MySQL "length-encoded integer": one byte below 251, else 0xfc + u16, 0xfd + u24,
/// 0xfe + u64. Returns the value and the bytes used.
pub(crate) fn read_packed_integer(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let width = match first {
        0..=250 => return Some((u64::from(first), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(1..1 + width)?;
    let mut a = [0u8; 8];
    a[..width].copy_from_slice(bytes);
    Some((u64::from_le_bytes(a), 1 + width))
}

pub(crate) fn read_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_integers() {
        assert_eq!(read_packed_integer(&[250]), Some((250, 1)));
        assert_eq!(read_packed_integer(&[0xfc, 0x34, 0x12]), Some((0x1234, 3)));
        assert_eq!(read_packed_integer(&[0xfd, 1, 2, 3]), Some((0x030201, 4)));
        assert_eq!(
            read_packed_integer(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0]),
            Some((1, 9))
        );
        assert_eq!(read_packed_integer(&[0xfe, 1]), None);
        assert_eq!(read_packed_integer(&[0xff]), None);
        assert_eq!(read_packed_integer(&[]), None);
    }
}

//! Node identifiers: UUIDs in hyphenated form; the agent makes random v4 ones.

/// Formats 16 random bytes as a UUID v4, setting the version and variant bits.
pub fn uuid_v4_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `s` is a UUID v4 in hyphenated form (either case): what the agent makes.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    is_uuid(s) && b[14] == b'4' && matches!(b[19].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b')
}

/// Whether `s` is a UUID of any version in hyphenated form (either case): what the
/// collector takes as a node id, since other agents may make theirs another way (V1
/// suggests deriving it from `/etc/machine-id`).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A node id as the collector keeps it: a UUID in hyphenated lower case, from either the
/// hyphenated form or the 32 bare hex digits of `/etc/machine-id`, which V1 suggests a
/// node id be derived from. `None` for anything else.
///
/// The nil and max UUIDs are refused: they are placeholders, and every host given one
/// would be the same node.
pub fn canonical_node_id(s: &str) -> Option<String> {
    let id = if is_uuid(s) {
        s.to_ascii_lowercase()
    } else if s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        let s = s.to_ascii_lowercase();
        format!("{}-{}-{}-{}-{}", &s[..8], &s[8..12], &s[12..16], &s[16..20], &s[20..])
    } else {
        return None;
    };
    let digits = || id.bytes().filter(|c| *c != b'-');
    (!digits().all(|c| c == b'0') && !digits().all(|c| c == b'f')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v4() {
        for seed in [[0u8; 16], [0xff; 16], [0x5a; 16]] {
            let id = uuid_v4_from_bytes(seed);
            assert!(is_uuid_v4(&id), "{id}");
        }
        assert_eq!(uuid_v4_from_bytes([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn validation() {
        // (input, a v4 UUID, a UUID)
        let cases = [
            ("550e8400-e29b-41d4-a716-446655440000", true, true),
            ("550E8400-E29B-41D4-A716-446655440000", true, true),
            ("550e8400-e29b-11d4-a716-446655440000", false, true), // version 1
            ("550e8400-e29b-41d4-c716-446655440000", false, true), // another variant
            ("550e8400e29b41d4a716446655440000", false, false),
            ("550e8400-e29b-41d4-a716-44665544000g", false, false),
            ("550e8400-e29b-41d4-a716-4466554400000", false, false),
            ("", false, false),
        ];
        for (input, v4, any) in cases {
            assert_eq!((is_uuid_v4(input), is_uuid(input)), (v4, any), "{input}");
        }
    }

    #[test]
    fn node_ids_take_the_machine_id_form_too() {
        let canonical = Some("550e8400-e29b-41d4-a716-446655440000".to_owned());
        assert_eq!(canonical_node_id("550E8400-E29B-41D4-A716-446655440000"), canonical);
        assert_eq!(canonical_node_id("550e8400e29b41d4a716446655440000"), canonical);
        assert_eq!(canonical_node_id("550E8400E29B41D4A716446655440000\n"), None);
        for bad in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            "",
            "550e8400e29b41d4a71644665544000",
            "550e8400e29b41d4a716446655440000a",
            "x50e8400e29b41d4a716446655440000",
        ] {
            assert_eq!(canonical_node_id(bad), None, "{bad}");
        }
    }
}

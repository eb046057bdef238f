//! Byte sizes and durations as written in policy files, and serde helpers
//! for capability grant structs.
//!
//! Sizes: a whole number of bytes (`1048576`, as a TOML integer or a string),
//! or a whole number followed by a unit, optionally after one space:
//! `B`, `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`,
//! `TiB` (powers of 1024). Units are case-sensitive and fractions are refused,
//! so that `"32mb"` or `"1.5GiB"` is an error rather than a guess.
//!
//! Durations: humantime strings such as `"250ms"`, `"5s"`, `"1m 30s"`.

use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("kB", 1000),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

const SIZE_HELP: &str = "expected a whole number of bytes or a number with a unit: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. \"64KiB\", \"32MiB\")";

/// Parses a byte size such as `"32MiB"`, `"1MB"` or `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("invalid size {text:?}: {SIZE_HELP}"));
    }
    if rest.starts_with('.') {
        return Err(format!(
            "invalid size {text:?}: fractions are not supported, use a smaller unit (e.g. \"1536MiB\")"
        ));
    }
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    let multiplier = if rest.is_empty() {
        1
    } else {
        match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, m)) => *m,
            None => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {unit:?}; {SIZE_HELP}"
                ));
            }
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Formats a byte size in the largest binary unit that divides it exactly
/// (`"32MiB"`, `"1536KiB"`), else as decimal units or plain bytes (`"1MB"`, `"1234B"`).
/// The result is accepted by [`parse_size`].
pub fn format_size(bytes: u64) -> String {
    let order = ["TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "kB"];
    for name in order {
        if let Some((_, m)) = UNITS.iter().find(|(n, _)| *n == name)
            && bytes != 0
            && bytes.is_multiple_of(*m)
        {
            return format!("{}{name}", bytes / m);
        }
    }
    format!("{bytes}B")
}

/// Parses a humantime duration such as `"250ms"` or `"5s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim().is_empty() {
        return Err("invalid duration \"\": expected e.g. \"250ms\", \"5s\", \"2m\"".to_string());
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?}: {e} (expected e.g. \"250ms\", \"5s\", \"2m\")")
    })
}

/// Formats a duration the way [`parse_duration`] reads it (`"1m 30s"`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde helper for a byte size written as a string (`"64KiB"`) or a
/// non-negative integer (bytes), into `u64`:
/// `#[serde(with = "crate::policy::serde_size")]`.
pub mod serde_size {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte size such as \"64KiB\" or a whole number of bytes")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            super::parse_size(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    /// For an optional size field (with `#[serde(default)]`).
    pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(SizeVisitor).map(Some)
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_size(*v))
    }
}

/// Serde helper for a humantime duration string (`"250ms"`) into
/// [`Duration`](std::time::Duration): `#[serde(with = "crate::policy::serde_duration")]`.
pub mod serde_duration {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use std::fmt;
    use std::time::Duration;

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"250ms\" or \"5s\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("32 MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("3kB"), Ok(3000));
        assert_eq!(parse_size("3KB"), Ok(3000));
        assert_eq!(parse_size("7GB"), Ok(7_000_000_000));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            " ",
            "MiB",
            "-1",
            "+1",
            "1.5GiB",
            "32mb",
            "32M",
            "32 ",
            " 32",
            "32  MiB",
            "32MiBs",
            "0x10",
            "1_000",
            "abc",
            "99999999999TiB",
            "18446744073709551616",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse_size("32mb").unwrap_err();
        assert!(e.contains("unknown unit \"mb\""), "{e}");
        assert!(parse_size("1.5GiB").unwrap_err().contains("fractions"));
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn size_round_trip() {
        for n in [
            0,
            1,
            1000,
            1024,
            1536 * 1024,
            32 << 20,
            1 << 30,
            1_000_000,
            1234,
            u64::MAX,
        ] {
            let s = format_size(n);
            assert_eq!(parse_size(&s), Ok(n), "{s}");
        }
        assert_eq!(format_size(32 << 20), "32MiB");
        assert_eq!(format_size(1_000_000), "1MB");
        assert_eq!(format_size(0), "0B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "5", "five seconds", "-5s", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_millis(1500))),
            Ok(Duration::from_millis(1500))
        );
    }

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    struct Both {
        #[serde(with = "crate::policy::serde_size")]
        size: u64,
        #[serde(with = "crate::policy::serde_duration")]
        every: Duration,
    }

    #[test]
    fn serde_helpers_with_json() {
        let b: Both = serde_json::from_str(r#"{"size":"2KiB","every":"1s"}"#).unwrap();
        assert_eq!(
            b,
            Both {
                size: 2048,
                every: Duration::from_secs(1)
            }
        );
        let b: Both = serde_json::from_str(r#"{"size":17,"every":"10ms"}"#).unwrap();
        assert_eq!(b.size, 17);
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"size":"17B","every":"10ms"}"#
        );
        assert!(serde_json::from_str::<Both>(r#"{"size":-1,"every":"1s"}"#).is_err());
        assert!(serde_json::from_str::<Both>(r#"{"size":"1x","every":"1s"}"#).is_err());
        assert!(serde_json::from_str::<Both>(r#"{"size":1,"every":5}"#).is_err());
        assert!(serde_json::from_str::<Both>(r#"{"size":1.5,"every":"1s"}"#).is_err());
    }
}

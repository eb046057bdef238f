//! Durations (`"10s"`, `"500ms"`, `"2m"`) and sizes (`"256MiB"`, `"1G"`) as
//! recipes write them.

use std::time::Duration;

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m` or `h` (no unit: seconds).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration `{text}` (expected e.g. \"500ms\", \"10s\", \"2m\")")
    })?;
    let millis = match unit.trim() {
        "ms" => value,
        "" | "s" => value * 1_000.0,
        "m" => value * 60_000.0,
        "h" => value * 3_600_000.0,
        other => return Err(format!("invalid duration `{text}`: unknown unit `{other}`")),
    };
    if !millis.is_finite() || !(0.0..=7.0 * 86_400_000.0).contains(&millis) {
        return Err(format!(
            "invalid duration `{text}`: out of range (0 to 7 days)"
        ));
    }
    Ok(Duration::from_millis(millis.round() as u64))
}

/// Parses a byte size: a plain integer, or a number with `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB` (all binary multiples, as memory limits are).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size `{text}` (expected e.g. \"256MiB\")"))?;
    let multiple: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("invalid size `{text}`: unknown unit `{other}`")),
    };
    let bytes = value * multiple;
    if !bytes.is_finite() || bytes < 1.0 || bytes > 1024.0_f64.powi(5) {
        return Err(format!("invalid size `{text}`: out of range"));
    }
    Ok(bytes as u64)
}

/// Milliseconds of a duration, saturating.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(duration("10 parsecs").is_err());
        assert!(duration("").is_err());
        assert!(duration("9999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("256MiB").unwrap(), 256 << 20);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("lots").is_err());
        assert!(size("0").is_err());
    }
}

//! Percentiles and the report's number formats.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = usize::try_from(saturating_u64(((p / 100.0) * sorted.len() as f64).ceil())).unwrap_or(usize::MAX);
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99, max and mean of a set of values.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
    pub mean: f64,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        p50: percentile(&v, 50.0)?,
        p99: percentile(&v, 99.0)?,
        max: *v.last()?,
        min: v[0],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    })
}

/// The whole part of `x` when it is finite and in 0..2^64, else `None`.
pub fn to_u64(x: f64) -> Option<u64> {
    // 2^64, exactly a float; u64::MAX as a float rounds up to it.
    const END: f64 = 18_446_744_073_709_551_616.0;
    if !(x.is_finite() && (0.0..END).contains(&x)) {
        return None;
    }
    // Checked above: finite and in range, so `as` only drops the fraction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(x as u64)
}

/// `x` as a whole number held to 0..=u64::MAX (NaN and negatives are 0).
pub fn saturating_u64(x: f64) -> u64 {
    to_u64(x).unwrap_or(if x > 0.0 { u64::MAX } else { 0 })
}

/// Now, in µs since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Milliseconds with a precision that suits the size.
pub fn ms(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0} ms")
    } else if v.abs() >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub fn secs(d: Duration) -> String {
    secs_f(d.as_secs_f64())
}

pub fn secs_f(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// KiB as MB (10^6 bytes), the unit of the targets read strictly.
pub fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

pub fn mb_f(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// An integer with thousands separators: 100000 → "100,000".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn rate(n: f64) -> String {
    format!("{}/s", int(saturating_u64(n.round())))
}

/// "12.3×" for a ratio, or "n/a".
pub fn ratio(num: f64, den: f64) -> String {
    if den > 0.0 && num.is_finite() && num > 0.0 {
        let r = num / den;
        if r >= 10.0 {
            format!("{r:.0}×")
        } else {
            format!("{r:.1}×")
        }
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!((s.p50, s.p99, s.max, s.min), (50.0, 99.0, 100.0, 1.0));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(int(100000), "100,000");
        assert_eq!(int(999), "999");
        assert_eq!(ratio(50.0, 5.0), "10×");
        assert_eq!(mb(29297), "30.0 MB");
    }

    #[test]
    fn floats_become_integers_only_when_in_range() {
        assert_eq!(to_u64(2.9), Some(2));
        assert_eq!(to_u64(0.0), Some(0));
        assert_eq!(to_u64(-0.5), None);
        assert_eq!(to_u64(f64::NAN), None);
        assert_eq!(to_u64(f64::INFINITY), None);
        assert_eq!(to_u64(18_446_744_073_709_551_616.0), None);
        assert_eq!(to_u64(18_446_744_073_709_549_568.0), Some(18_446_744_073_709_549_568));
        assert_eq!(saturating_u64(1e300), u64::MAX);
        assert_eq!(saturating_u64(-1e300), 0);
        assert_eq!(saturating_u64(f64::NAN), 0);
        assert_eq!(rate(1234.6), "1,235/s");
    }
}

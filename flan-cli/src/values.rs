//! Value parsers for numeric options: a value out of its range is refused while the arguments
//! are parsed, with the range in the message, and exits with status 2 like every usage error.
//! Before these, `--top-p 2`, `--top-p nan`, `--temperature inf` or `--num-beams 0` were accepted
//! and changed the run silently (`--num-beams 0` ran greedy; a NaN top-p kept every token).

/// An integer of at least 1 (`--batch-size`, `--num-beams`, `--max-new-tokens`, ...).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    let value: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number of at least 1, got {text:?}"))?;
    if value == 0 {
        return Err("must be at least 1".into());
    }
    Ok(value)
}

/// [`at_least_one`] for u64 options (`--count`, `--shards`, ...).
pub fn at_least_one_u64(text: &str) -> Result<u64, String> {
    at_least_one(text).map(|v| v as u64)
}

/// A tokenizer's piece vocabulary: at least 4 (3 special tokens and one piece).
pub fn vocab_size(text: &str) -> Result<usize, String> {
    let value = at_least_one(text)?;
    if value < 4 {
        return Err(format!(
            "must be at least 4 (3 special tokens and a piece), got {value}"
        ));
    }
    Ok(value)
}

/// A finite number (`--length-penalty`).
pub fn finite(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, got {text:?}"))?;
    if !value.is_finite() {
        return Err(format!("must be a finite number, got {value}"));
    }
    Ok(value)
}

/// A finite number above 0 (`--temperature`).
pub fn positive(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if value <= 0.0 {
        return Err(format!("must be greater than 0, got {value}"));
    }
    Ok(value)
}

/// A probability mass in (0, 1] (`--top-p`; 1 keeps every token).
pub fn nucleus(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number in (0, 1], got {text:?}"))?;
    if !(value > 0.0 && value <= 1.0) {
        return Err(format!("must be in (0, 1], got {value}"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced_and_named() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-1").unwrap_err().contains("at least 1"));
        assert!(at_least_one("x").is_err());
        assert_eq!(finite("-2.5"), Ok(-2.5));
        for bad in ["nan", "inf", "-inf", "NaN", "1e999"] {
            assert!(finite(bad).unwrap_err().contains("finite"), "{bad}");
        }
        assert_eq!(positive("0.7"), Ok(0.7));
        assert!(positive("0").unwrap_err().contains("greater than 0"));
        assert!(positive("inf").unwrap_err().contains("finite"));
        assert_eq!(nucleus("1"), Ok(1.0));
        assert_eq!(nucleus("0.9"), Ok(0.9));
        for bad in ["0", "2", "nan", "-0.1", "inf"] {
            assert!(nucleus(bad).unwrap_err().contains("(0, 1]"), "{bad}");
        }
    }
}

//! Kubernetes resource quantities ("100m", "1.5Gi", "2e3") as integer milli-units, for the scheduler and the
//! node agent alike. Written here because no
//! maintained crate parses them for k8s-openapi 0.29's `Quantity` (a plain string); the rules are upstream's
//! `resource.ParseQuantity`: a signed decimal number, then a binary (Ki..Ei), decimal (n..E) or exponent suffix.

/// A quantity in thousandths of its unit (millicores for cpu, millibytes for memory), rounded up as upstream's
/// `MilliValue` does. None when the text is not a quantity or does not fit.
pub fn parse_milli(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // mantissa / 10^scale is the number as written.
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = u32::try_from(fraction.len()).ok()?;
    let (numerator, denominator) = multiplier(suffix)?;
    let top = mantissa.checked_mul(numerator)?.checked_mul(1000)?;
    let bottom = 10i128.checked_pow(scale)?.checked_mul(denominator)?;
    let magnitude = top.checked_add(bottom - 1)? / bottom;
    Some(if negative { -magnitude } else { magnitude })
}

/// The suffix as a fraction numerator/denominator.
fn multiplier(suffix: &str) -> Option<(i128, i128)> {
    let binary = |power: u32| Some((1024i128.pow(power), 1));
    let decimal = |exponent: i32| {
        if exponent >= 0 {
            Some((10i128.checked_pow(exponent.unsigned_abs())?, 1))
        } else {
            Some((1, 10i128.checked_pow(exponent.unsigned_abs())?))
        }
    };
    match suffix {
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exponent => {
            let rest = exponent.strip_prefix(['e', 'E'])?;
            let value: i32 = rest.parse().ok()?;
            if value.unsigned_abs() > 30 {
                return None;
            }
            decimal(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_become_millicores() {
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("2.25"), Some(2250));
        assert_eq!(parse_milli(".5"), Some(500));
    }

    #[test]
    fn memory_quantities_use_binary_and_decimal_suffixes() {
        assert_eq!(parse_milli("1Ki"), Some(1024 * 1000));
        assert_eq!(parse_milli("1.5Gi"), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("128M"), Some(128_000_000 * 1000));
        assert_eq!(parse_milli("2e3"), Some(2_000_000));
        assert_eq!(parse_milli("1E6"), Some(1_000_000_000));
    }

    #[test]
    fn tiny_values_round_up_like_milli_value() {
        assert_eq!(parse_milli("1n"), Some(1));
        assert_eq!(parse_milli("1500u"), Some(2));
    }

    #[test]
    fn garbage_is_not_a_quantity() {
        for bad in ["", "abc", "1x", "1.2.3", "--1", "m", "1e99", "."] {
            assert_eq!(parse_milli(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signs_exponents_and_malformed_numbers_as_upstream() {
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("32Mi"), Some(33_554_432_000));
        assert_eq!(parse_milli("-1"), Some(-1000));
        for bad in ["", "Mi", "1.2.3", "12x", "1e99", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }
}

//! Whole numbers as JSON Schema counts them: `49` and `49.0` alike. Clients
//! and generated SDKs write integers either way; refusing `49.0` for an
//! integer field would refuse a valid request. A leaf: serde only.

use serde::{Deserialize, Deserializer, de::Error};

/// An `i64` written as an integer or as a float with no fraction.
pub fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(D::Error::custom(format!(
            "expected a whole number within 64 bits, got {number}"
        ))),
    }
}

/// An `f64` read through `serde_json::Number`, so it also reads inside an
/// internally tagged enum, whose buffered numbers `arbitrary_precision`
/// turns into maps that a plain `f64` refuses.
pub fn real<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    number
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| D::Error::custom(format!("expected a finite number, got {number}")))
}

/// `whole`, for an optional field (`null` or absent is `None`).
pub fn maybe_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole")] i64);
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::whole")]
        n: i64,
        #[serde(default, deserialize_with = "super::maybe_whole")]
        m: Option<i64>,
    }

    fn read(text: &str) -> Result<(i64, Option<i64>), String> {
        serde_json::from_str::<Body>(text)
            .map(|b| (b.n, b.m))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_integral_floats_are_whole_and_fractions_are_not() {
        assert_eq!(read(r#"{"n": 49}"#), Ok((49, None)));
        assert_eq!(read(r#"{"n": 49.0, "m": -2.0}"#), Ok((49, Some(-2))));
        assert_eq!(read(r#"{"n": 1, "m": null}"#), Ok((1, None)));
        assert!(read(r#"{"n": 49.5}"#).unwrap_err().contains("whole number"));
        assert!(read(r#"{"n": 1e30}"#).unwrap_err().contains("whole number"));
        assert!(read(r#"{"n": "49"}"#).is_err());
    }
}

//! PostgreSQL's binary `numeric`, exactly, for every `DECIMAL(p, s)` Eddy has (up to 38
//! digits: an `i128` and a scale), both ways. (rust_decimal holds 28 digits, so `NUMERIC`,
//! which is `DECIMAL(38, 10)`, did not fit it.)
//!
//! The format: `ndigits`, `weight`, `sign`, `dscale` (each 16 bits, big-endian), then
//! `ndigits` base-10000 digits; the value is `sum(digit[i] * 10000^(weight - i))`, shown with
//! `dscale` decimal places.

use bytes::{BufMut, BytesMut};

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;

/// A decimal value as PostgreSQL's `numeric`: `value * 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgNumeric {
    /// The unscaled value.
    pub value: i128,
    /// Digits after the decimal point.
    pub scale: u32,
}

impl PgNumeric {
    /// The binary form.
    pub fn encode(&self, out: &mut BytesMut) {
        let digits = self.value.unsigned_abs().to_string();
        let scale = self.scale as usize;
        // Integer and fraction digits, the fraction padded to `scale` with leading zeros.
        let (int_part, frac_part) = if digits.len() > scale {
            digits.split_at(digits.len() - scale)
        } else {
            ("", digits.as_str())
        };
        let frac = format!("{frac_part:0>scale$}");
        // Groups of four: the integer part padded on the left, the fraction on the right.
        let int = format!(
            "{int_part:0>width$}",
            width = int_part.len().div_ceil(4) * 4
        );
        let frac = format!("{frac:0<width$}", width = frac.len().div_ceil(4) * 4);
        let group = |s: &str| -> Vec<i16> {
            s.as_bytes()
                .chunks(4)
                .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
                .collect()
        };
        let mut groups = group(&int);
        let int_groups = groups.len() as i16;
        groups.extend(group(&frac));
        // Strip leading zero groups (each lowers the weight) and trailing ones.
        let mut weight = int_groups - 1;
        let lead = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..lead);
        weight -= lead as i16;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_i16(groups.len() as i16);
        out.put_i16(weight);
        out.put_u16(if self.value < 0 { NEGATIVE } else { POSITIVE });
        out.put_u16(self.scale as u16);
        for g in groups {
            out.put_i16(g);
        }
    }

    /// Reads the binary form; an error for NaN, infinities, a malformed value or one that
    /// does not fit 38 digits.
    pub fn decode(raw: &[u8]) -> Result<PgNumeric, String> {
        let word = |i: usize| -> Result<u16, String> {
            raw.get(2 * i..2 * i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "numeric value is truncated".to_string())
        };
        let ndigits = word(0)? as i16;
        let weight = word(1)? as i16;
        let sign = word(2)?;
        let dscale = word(3)?;
        if sign == NAN || (sign != POSITIVE && sign != NEGATIVE) {
            return Err("NaN and infinite numeric values cannot be stored".into());
        }
        if ndigits < 0 || raw.len() != 8 + 2 * ndigits as usize {
            return Err("numeric value has the wrong length".into());
        }
        let scale = u32::from(dscale);
        if scale > 38 {
            return Err(format!("numeric scale {scale} is above 38"));
        }
        let overflow = || "numeric value does not fit 38 digits".to_string();
        let mut value: i128 = 0;
        for i in 0..ndigits as usize {
            let digit = word(4 + i)? as i16;
            if !(0..10_000).contains(&digit) {
                return Err("numeric digit out of range".into());
            }
            // This digit times 10000^(weight - i), times 10^scale.
            let exponent = 4 * (i32::from(weight) - i as i32) + scale as i32;
            let term = if exponent >= 0 {
                10i128
                    .checked_pow(exponent as u32)
                    .and_then(|p| p.checked_mul(i128::from(digit)))
                    .ok_or_else(overflow)?
            } else {
                // Digits past `dscale` (PostgreSQL sends none but zeros): cut.
                10i128
                    .checked_pow((-exponent) as u32)
                    .map_or(0, |p| i128::from(digit) / p)
            };
            value = value.checked_add(term).ok_or_else(overflow)?;
        }
        if value.unsigned_abs() >= 10u128.pow(38) {
            return Err(overflow());
        }
        Ok(PgNumeric {
            value: if sign == NEGATIVE { -value } else { value },
            scale,
        })
    }

    /// The number of significant digits of the unscaled value (at least the scale + 1).
    pub fn precision(&self) -> u32 {
        let digits = self
            .value
            .unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d + 1);
        digits.max(self.scale + 1)
    }
}

impl std::fmt::Display for PgNumeric {
    /// The text form: all `scale` decimal places, as PostgreSQL prints a `numeric(p, s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.value.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let sign = if self.value < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = digits.split_at(digits.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use postgres_types::{FromSql, ToSql, Type};
    use rust_decimal::Decimal;

    use super::*;

    fn encoded(value: i128, scale: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        PgNumeric { value, scale }.encode(&mut out);
        out.to_vec()
    }

    /// Where rust_decimal (PostgreSQL's format as tokio-postgres speaks it) holds the value,
    /// both encode it to the same value, and every value decodes back to itself.
    #[test]
    fn numeric_round_trips_and_agrees_with_rust_decimal() {
        let cases: [(i128, u32); 12] = [
            (0, 0),
            (0, 4),
            (1, 0),
            (-1, 2),
            (12345, 2),
            (10_000, 0),
            (100_000_000, 4),
            (-9_999_999_999, 2),
            (1, 10),
            (123_456_789_012_345_678_901_234_567, 10),
            (-(10i128.pow(38) - 1), 10),
            (10i128.pow(37), 0),
        ];
        for (value, scale) in cases {
            let bytes = encoded(value, scale);
            assert_eq!(
                PgNumeric::decode(&bytes),
                Ok(PgNumeric { value, scale }),
                "{value} e-{scale}"
            );
            if let Ok(d) = Decimal::try_from_i128_with_scale(value, scale) {
                let theirs = Decimal::from_sql(&Type::NUMERIC, &bytes).unwrap();
                assert_eq!(theirs, d, "{value} e-{scale}");
                let mut their_bytes = BytesMut::new();
                d.to_sql(&Type::NUMERIC, &mut their_bytes).unwrap();
                // The same number (rust_decimal may send fewer decimal places of a zero).
                let ours = PgNumeric::decode(&their_bytes).unwrap();
                assert_eq!(
                    Decimal::try_from_i128_with_scale(ours.value, ours.scale).unwrap(),
                    d
                );
            }
        }
    }

    #[test]
    fn text_form_has_every_decimal_place() {
        for (value, scale, text) in [
            (0, 0, "0"),
            (0, 2, "0.00"),
            (5, 2, "0.05"),
            (-5, 2, "-0.05"),
            (12345, 2, "123.45"),
            (-100, 0, "-100"),
        ] {
            assert_eq!(PgNumeric { value, scale }.to_string(), text);
        }
    }

    #[test]
    fn bad_numerics_are_errors() {
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(PgNumeric::decode(&nan).is_err());
        assert!(PgNumeric::decode(&[0, 1, 0, 0]).is_err());
        // One digit said, none given.
        assert!(PgNumeric::decode(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
        // 10000^10: 41 digits.
        assert!(PgNumeric::decode(&[0, 1, 0, 10, 0, 0, 0, 0, 0, 1]).is_err());
    }
}

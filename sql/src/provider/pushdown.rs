//! Pruning by pseudo-columns: turns filters on `rowpartition`, `rowoffset` and `rowtime` into
//! [`ScanBounds`] that pick partitions, seek offsets through the sparse index, and skip segments
//! and batches by their min/max timestamps without decoding them.
//!
//! Bounds are conservative (they may keep rows the filter rejects, never drop one it accepts),
//! so the filter is reported to DataFusion as `Inexact` and re-applied to the rows read.

use std::collections::BTreeSet;
use std::fmt;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// Which partitions, offsets and event times a scan must read.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanBounds {
    /// Partitions to read, ascending.
    pub partitions: Vec<u32>,
    /// First offset to read (inclusive).
    pub offset_start: u64,
    /// Offset to stop before (exclusive); `u64::MAX` for the end of the log.
    pub offset_end: u64,
    /// Inclusive event-time range in epoch ms.
    pub time: (i64, i64),
}

const PSEUDO: [&str; 3] = ["rowpartition", "rowoffset", "rowtime"];

/// Whether a filter can narrow a scan.
pub fn is_prunable(expr: &Expr) -> bool {
    let mut b = Acc::default();
    b.apply(expr)
}

#[derive(Debug, Default)]
struct Acc {
    partitions: Option<BTreeSet<i64>>,
    part_lo: i64,
    part_hi: i64,
    off_lo: i64,
    off_hi: i64,
    t_lo: i64,
    t_hi: i64,
}

impl ScanBounds {
    /// Bounds implied by the conjunction of `filters`, for a stream of `partitions` partitions.
    pub fn from_filters(filters: &[Expr], partitions: u32) -> ScanBounds {
        let mut acc = Acc {
            part_hi: i64::MAX,
            off_hi: i64::MAX,
            t_lo: i64::MIN,
            t_hi: i64::MAX,
            ..Acc::default()
        };
        for f in filters {
            acc.apply(f);
        }
        let parts = (0..partitions)
            .filter(|p| {
                let p = *p as i64;
                p >= acc.part_lo
                    && p <= acc.part_hi
                    && acc.partitions.as_ref().is_none_or(|set| set.contains(&p))
            })
            .collect();
        ScanBounds {
            partitions: parts,
            offset_start: acc.off_lo.max(0) as u64,
            offset_end: if acc.off_hi == i64::MAX {
                u64::MAX
            } else {
                (acc.off_hi.max(-1) + 1) as u64
            },
            time: (acc.t_lo, acc.t_hi),
        }
    }

    /// Whether nothing narrows the scan.
    pub fn is_full(&self, partitions: u32) -> bool {
        self.partitions.len() == partitions as usize
            && self.offset_start == 0
            && self.offset_end == u64::MAX
            && self.time == (i64::MIN, i64::MAX)
    }
}

impl fmt::Display for ScanBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partitions={:?}", self.partitions)?;
        if self.offset_start != 0 || self.offset_end != u64::MAX {
            let end = if self.offset_end == u64::MAX {
                "end".to_string()
            } else {
                self.offset_end.to_string()
            };
            write!(f, ", rowoffset=[{}, {end})", self.offset_start)?;
        }
        if self.time != (i64::MIN, i64::MAX) {
            let show = |v: i64, inf: &str| {
                if v == i64::MIN || v == i64::MAX {
                    inf.to_string()
                } else {
                    v.to_string()
                }
            };
            write!(
                f,
                ", rowtime_ms=[{}, {}]",
                show(self.time.0, "-inf"),
                show(self.time.1, "+inf")
            )?;
        }
        Ok(())
    }
}

/// A pseudo-column reference, looking through casts DataFusion adds for type coercion.
fn pseudo_column(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::Column(c) => PSEUDO.iter().find(|p| **p == c.name).copied(),
        Expr::Cast(c) => pseudo_column(&c.expr),
        Expr::TryCast(c) => pseudo_column(&c.expr),
        _ => None,
    }
}

/// An integer literal (ms for timestamps), looking through casts.
fn literal_value(expr: &Expr) -> Option<i64> {
    let v = match expr {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return literal_value(&c.expr),
        _ => return None,
    };
    match v {
        ScalarValue::Int8(Some(x)) => Some(*x as i64),
        ScalarValue::Int16(Some(x)) => Some(*x as i64),
        ScalarValue::Int32(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt8(Some(x)) => Some(*x as i64),
        ScalarValue::UInt16(Some(x)) => Some(*x as i64),
        ScalarValue::UInt32(Some(x)) => Some(*x as i64),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampMicrosecond(Some(x), _) => Some(x.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000_000)),
        _ => None,
    }
}

impl Acc {
    /// Folds one conjunct in; returns whether it was understood.
    fn apply(&mut self, expr: &Expr) -> bool {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                let l = self.apply(left);
                let r = self.apply(right);
                l || r
            }
            Expr::BinaryExpr(BinaryExpr {
                op: Operator::Or, ..
            })
            | Expr::InList(_) => match partition_set(expr) {
                Some(v) => {
                    self.partitions = Some(match self.partitions.take() {
                        Some(prev) => prev.intersection(&v).copied().collect(),
                        None => v,
                    });
                    true
                }
                None => false,
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, value, op) = match (pseudo_column(left), literal_value(right)) {
                    (Some(c), Some(v)) => (c, v, *op),
                    _ => match (pseudo_column(right), literal_value(left), op.swap()) {
                        (Some(c), Some(v), Some(op)) => (c, v, op),
                        _ => return false,
                    },
                };
                // For time, sub-millisecond literals were floored: widen strict bounds by one.
                let (lo, hi) = match op {
                    Operator::Eq => (value, value),
                    Operator::Gt if col == "rowtime" => (value, i64::MAX),
                    Operator::Gt => (value.saturating_add(1), i64::MAX),
                    Operator::GtEq => (value, i64::MAX),
                    Operator::Lt if col == "rowtime" => (i64::MIN, value.saturating_add(1)),
                    Operator::Lt => (i64::MIN, value.saturating_sub(1)),
                    Operator::LtEq if col == "rowtime" => (i64::MIN, value.saturating_add(1)),
                    Operator::LtEq => (i64::MIN, value),
                    _ => return false,
                };
                self.narrow(col, lo, hi);
                true
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => match (pseudo_column(expr), literal_value(low), literal_value(high)) {
                (Some(c), Some(lo), Some(hi)) => {
                    let hi = if c == "rowtime" {
                        hi.saturating_add(1)
                    } else {
                        hi
                    };
                    self.narrow(c, lo, hi);
                    true
                }
                _ => false,
            },

            _ => false,
        }
    }

    fn narrow(&mut self, col: &str, lo: i64, hi: i64) {
        let (l, h) = match col {
            "rowpartition" => (&mut self.part_lo, &mut self.part_hi),
            "rowoffset" => (&mut self.off_lo, &mut self.off_hi),
            _ => (&mut self.t_lo, &mut self.t_hi),
        };
        *l = (*l).max(lo);
        *h = (*h).min(hi);
    }
}

/// The set of partitions an `rowpartition = a OR rowpartition IN (b, c) OR ...` filter allows
/// (DataFusion rewrites short IN lists into ORs).
fn partition_set(expr: &Expr) -> Option<BTreeSet<i64>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut l = partition_set(left)?;
            l.extend(partition_set(right)?);
            Some(l)
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            match (
                pseudo_column(left),
                literal_value(right),
                pseudo_column(right),
                literal_value(left),
            ) {
                (Some("rowpartition"), Some(v), _, _) | (_, _, Some("rowpartition"), Some(v)) => {
                    Some(BTreeSet::from([v]))
                }
                _ => None,
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if pseudo_column(expr) == Some("rowpartition") => {
            list.iter().map(literal_value).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn offsets_partitions_and_time_narrow() {
        let filters = vec![
            col("rowoffset")
                .gt_eq(lit(10i64))
                .and(col("rowoffset").lt(lit(20i64))),
            col("rowpartition").in_list(vec![lit(0i32), lit(2i32)], false),
            col("rowtime").between(
                lit(ScalarValue::TimestampMillisecond(Some(1000), None)),
                lit(ScalarValue::TimestampMillisecond(Some(2000), None)),
            ),
            col("other").eq(lit(1)),
        ];
        let b = ScanBounds::from_filters(&filters, 4);
        assert_eq!(b.partitions, vec![0, 2]);
        assert_eq!((b.offset_start, b.offset_end), (10, 20));
        assert_eq!(b.time, (1000, 2001));
        assert!(!is_prunable(&filters[3]));
    }

    #[test]
    fn or_of_partitions_is_a_set() {
        let f = col("rowpartition")
            .eq(lit(0))
            .or(col("rowpartition").eq(lit(2)));
        assert_eq!(ScanBounds::from_filters(&[f], 4).partitions, vec![0, 2]);
        let mixed = col("rowpartition").eq(lit(0)).or(col("x").eq(lit(2)));
        assert!(!is_prunable(&mixed));
    }

    #[test]
    fn contradictory_bounds_select_nothing() {
        let b = ScanBounds::from_filters(&[col("rowpartition").eq(lit(7))], 3);
        assert!(b.partitions.is_empty());
        let b = ScanBounds::from_filters(&[lit(5i64).lt(col("rowoffset"))], 1);
        assert_eq!(b.offset_start, 6);
    }
}

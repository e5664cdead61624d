//! Accumulators of a persistent aggregation: one value per group *slot*, in typed vectors
//! indexed by slot, updated a batch at a time (as DataFusion's `GroupsAccumulator`s are), and
//! able to write their state as Arrow arrays and read it back (for checkpoints).
//!
//! Unlike DataFusion's accumulators these never *consume* their groups when evaluated: a
//! table emits the current value of a group many times (`EMIT CHANGES`).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Array, Int64Array, ListBuilder, PrimitiveArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int64Type,
};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};

/// The aggregate functions a persistent query computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    LatestByOffset,
    EarliestByOffset,
}

impl AggFn {
    /// The function DataFusion planned, by name (`distinct` for `COUNT(DISTINCT x)`).
    pub(crate) fn from_name(name: &str, distinct: bool) -> Option<AggFn> {
        Some(match (name, distinct) {
            ("count", false) => AggFn::Count,
            ("count", true) | ("count_distinct", _) => AggFn::CountDistinct,
            ("sum", false) => AggFn::Sum,
            ("avg", false) | ("mean", false) => AggFn::Avg,
            ("min", _) => AggFn::Min,
            ("max", _) => AggFn::Max,
            ("latest_by_offset", false) => AggFn::LatestByOffset,
            ("earliest_by_offset", false) => AggFn::EarliestByOffset,
            _ => return None,
        })
    }
}

/// Per-slot state of one aggregate.
pub(crate) trait Accumulator: Send + Sync {
    /// Makes room for slots `0..n`.
    fn resize(&mut self, n: usize);
    /// Folds `arg[rows[i]]` into slot `slots[i]` for every `i` (`arg` is `None` for `COUNT(*)`).
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()>;
    /// Folds slot `from` into slot `into` (session windows merging).
    fn merge(&mut self, into: u32, from: u32);
    /// Clears a slot for reuse.
    fn reset(&mut self, slot: u32);
    /// The current values of `slots`, one row each.
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef>;
    /// The state of `slots`, as one or more arrays of `slots.len()` rows.
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>>;
    /// Sets `slots[i]` from row `i` of `state` (as [`Accumulator::state`] wrote it).
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()>;
    /// How many state arrays [`Accumulator::state`] writes.
    fn state_width(&self) -> usize {
        1
    }
}

/// An accumulator for `func` over arguments of `arg_type`.
pub(crate) fn create(func: AggFn, arg_type: &DataType) -> Result<Box<dyn Accumulator>> {
    Ok(match func {
        AggFn::Count => Box::new(Count::default()),
        AggFn::Sum => match arg_type {
            t if t.is_integer() || t == &DataType::Null => {
                Box::new(Sum::<Int64Type>::new(DataType::Int64, i64::wrapping_add))
            }
            t if t.is_floating() => {
                Box::new(Sum::<Float64Type>::new(DataType::Float64, |a, b| a + b))
            }
            DataType::Decimal128(_, s) => Box::new(Sum::<Decimal128Type>::new(
                DataType::Decimal128(38, *s),
                i128::wrapping_add,
            )),
            other => {
                return Err(DataFusionError::Plan(format!(
                    "SUM of {other} is not supported in persistent queries"
                )));
            }
        },
        AggFn::Avg => {
            if !(arg_type.is_numeric() || arg_type == &DataType::Null) {
                return Err(DataFusionError::Plan(format!("AVG of {arg_type}")));
            }
            Box::new(Avg::default())
        }
        AggFn::Min | AggFn::Max | AggFn::LatestByOffset | AggFn::EarliestByOffset => {
            Box::new(Scalars {
                func,
                null: ScalarValue::try_from(arg_type)?,
                values: vec![],
            })
        }
        AggFn::CountDistinct => Box::new(CountDistinct {
            converter: RowConverter::new(vec![SortField::new(arg_type.clone())])?,
            sets: vec![],
        }),
    })
}

fn valid(arg: Option<&ArrayRef>, row: u32) -> bool {
    arg.is_none_or(|a| a.is_valid(row as usize))
}

#[derive(Default)]
struct Count {
    counts: Vec<i64>,
}

impl Accumulator for Count {
    fn resize(&mut self, n: usize) {
        self.counts.resize(n, 0);
    }
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()> {
        match arg.filter(|a| a.null_count() > 0) {
            None => slots.iter().for_each(|&s| self.counts[s as usize] += 1),
            Some(a) => {
                for (&r, &s) in rows.iter().zip(slots) {
                    if a.is_valid(r as usize) {
                        self.counts[s as usize] += 1;
                    }
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, into: u32, from: u32) {
        self.counts[into as usize] += self.counts[from as usize];
    }
    fn reset(&mut self, slot: u32) {
        self.counts[slot as usize] = 0;
    }
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            slots.iter().map(|&s| self.counts[s as usize]),
        )))
    }
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(slots)?])
    }
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()> {
        let a = state[0].as_primitive::<Int64Type>();
        for (i, &s) in slots.iter().enumerate() {
            self.counts[s as usize] = a.value(i);
        }
        Ok(())
    }
}

/// A sum over a primitive Arrow type (`Int64` for integers, `Float64` for floats,
/// `Decimal128(38, s)` for decimals): `None` until the first non-NULL value.
struct Sum<T: ArrowPrimitiveType> {
    /// The type arguments are cast to and results are built as.
    target: DataType,
    add: fn(T::Native, T::Native) -> T::Native,
    sums: Vec<Option<T::Native>>,
}

impl<T: ArrowPrimitiveType> Sum<T> {
    fn new(target: DataType, add: fn(T::Native, T::Native) -> T::Native) -> Self {
        Sum {
            target,
            add,
            sums: Vec::new(),
        }
    }
}

impl<T: ArrowPrimitiveType> Accumulator for Sum<T> {
    fn resize(&mut self, n: usize) {
        self.sums.resize(n, None);
    }
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()> {
        let Some(arg) = arg else { return Ok(()) };
        let arg = cast(arg, &self.target)?;
        let values = arg.as_primitive::<T>();
        for (&r, &s) in rows.iter().zip(slots) {
            if values.is_valid(r as usize) {
                let v = values.value(r as usize);
                let slot = &mut self.sums[s as usize];
                *slot = Some(slot.map_or(v, |acc| (self.add)(acc, v)));
            }
        }
        Ok(())
    }
    fn merge(&mut self, into: u32, from: u32) {
        if let Some(v) = self.sums[from as usize] {
            let slot = &mut self.sums[into as usize];
            *slot = Some(slot.map_or(v, |acc| (self.add)(acc, v)));
        }
    }
    fn reset(&mut self, slot: u32) {
        self.sums[slot as usize] = None;
    }
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef> {
        let values: PrimitiveArray<T> = slots.iter().map(|&s| self.sums[s as usize]).collect();
        Ok(Arc::new(values.with_data_type(self.target.clone())))
    }
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(slots)?])
    }
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()> {
        let a = state[0].as_primitive::<T>();
        for (i, &s) in slots.iter().enumerate() {
            self.sums[s as usize] = a.is_valid(i).then(|| a.value(i));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Avg {
    sums: Vec<f64>,
    counts: Vec<i64>,
}

impl Accumulator for Avg {
    fn resize(&mut self, n: usize) {
        self.sums.resize(n, 0.0);
        self.counts.resize(n, 0);
    }
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()> {
        let Some(arg) = arg else { return Ok(()) };
        let arg = cast(arg, &DataType::Float64)?;
        let values = arg.as_primitive::<Float64Type>();
        for (&r, &s) in rows.iter().zip(slots) {
            if values.is_valid(r as usize) {
                self.sums[s as usize] += values.value(r as usize);
                self.counts[s as usize] += 1;
            }
        }
        Ok(())
    }
    fn merge(&mut self, into: u32, from: u32) {
        self.sums[into as usize] += self.sums[from as usize];
        self.counts[into as usize] += self.counts[from as usize];
    }
    fn reset(&mut self, slot: u32) {
        self.sums[slot as usize] = 0.0;
        self.counts[slot as usize] = 0;
    }
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from_iter(slots.iter().map(|&s| {
            let n = self.counts[s as usize];
            (n > 0).then(|| self.sums[s as usize] / n as f64)
        }))))
    }
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::new(Float64Array::from_iter_values(
                slots.iter().map(|&s| self.sums[s as usize]),
            )),
            Arc::new(Int64Array::from_iter_values(
                slots.iter().map(|&s| self.counts[s as usize]),
            )),
        ])
    }
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()> {
        let sums = state[0].as_primitive::<Float64Type>();
        let counts = state[1].as_primitive::<Int64Type>();
        for (i, &s) in slots.iter().enumerate() {
            self.sums[s as usize] = sums.value(i);
            self.counts[s as usize] = counts.value(i);
        }
        Ok(())
    }
    fn state_width(&self) -> usize {
        2
    }
}

/// MIN, MAX, LATEST_BY_OFFSET and EARLIEST_BY_OFFSET over any type, as one `ScalarValue` per
/// slot. NULL arguments are ignored (ksqlDB's default for the `_BY_OFFSET` functions).
struct Scalars {
    func: AggFn,
    /// The typed NULL of the argument type (an empty slot).
    null: ScalarValue,
    values: Vec<ScalarValue>,
}

impl Scalars {
    fn fold(&self, current: &ScalarValue, new: ScalarValue) -> Option<ScalarValue> {
        if current.is_null() {
            return Some(new);
        }
        let replace = match self.func {
            AggFn::Min => new.partial_cmp(current) == Some(std::cmp::Ordering::Less),
            AggFn::Max => new.partial_cmp(current) == Some(std::cmp::Ordering::Greater),
            AggFn::LatestByOffset => true,
            _ => false,
        };
        replace.then_some(new)
    }
}

impl Accumulator for Scalars {
    fn resize(&mut self, n: usize) {
        self.values.resize(n, self.null.clone());
    }
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()> {
        let Some(arg) = arg else { return Ok(()) };
        for (&r, &s) in rows.iter().zip(slots) {
            if !valid(Some(arg), r) {
                continue;
            }
            let new = ScalarValue::try_from_array(arg, r as usize)?;
            if let Some(v) = self.fold(&self.values[s as usize], new) {
                self.values[s as usize] = v;
            }
        }
        Ok(())
    }
    fn merge(&mut self, into: u32, from: u32) {
        // Session windows merge an older session (`into` holds the earlier rows for
        // EARLIEST, the later for LATEST is decided by the caller's order: `from` is newer).
        let from_value = self.values[from as usize].clone();
        if from_value.is_null() {
            return;
        }
        if let Some(v) = self.fold(&self.values[into as usize], from_value) {
            self.values[into as usize] = v;
        }
    }
    fn reset(&mut self, slot: u32) {
        self.values[slot as usize] = self.null.clone();
    }
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef> {
        if slots.is_empty() {
            return Ok(datafusion::arrow::array::new_empty_array(
                &self.null.data_type(),
            ));
        }
        ScalarValue::iter_to_array(slots.iter().map(|&s| self.values[s as usize].clone()))
    }
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(slots)?])
    }
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()> {
        for (i, &s) in slots.iter().enumerate() {
            self.values[s as usize] = ScalarValue::try_from_array(&state[0], i)?;
        }
        Ok(())
    }
}

/// COUNT_DISTINCT / COUNT(DISTINCT x): the set of distinct values per slot, as row-format bytes.
struct CountDistinct {
    converter: RowConverter,
    sets: Vec<HashSet<Box<[u8]>>>,
}

impl Accumulator for CountDistinct {
    fn resize(&mut self, n: usize) {
        self.sets.resize_with(n, HashSet::new);
    }
    fn update(&mut self, arg: Option<&ArrayRef>, rows: &[u32], slots: &[u32]) -> Result<()> {
        let Some(arg) = arg else { return Ok(()) };
        let encoded = self.converter.convert_columns(std::slice::from_ref(arg))?;
        for (&r, &s) in rows.iter().zip(slots) {
            if arg.is_valid(r as usize) {
                let row = encoded.row(r as usize);
                let set = &mut self.sets[s as usize];
                if !set.contains(row.as_ref()) {
                    set.insert(row.as_ref().into());
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, into: u32, from: u32) {
        let from = std::mem::take(&mut self.sets[from as usize]);
        self.sets[into as usize].extend(from);
    }
    fn reset(&mut self, slot: u32) {
        self.sets[slot as usize] = HashSet::new();
    }
    fn evaluate(&self, slots: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            slots.iter().map(|&s| self.sets[s as usize].len() as i64),
        )))
    }
    fn state(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        let mut builder = ListBuilder::new(BinaryBuilder::new());
        for &s in slots {
            for v in &self.sets[s as usize] {
                builder.values().append_value(v);
            }
            builder.append(true);
        }
        Ok(vec![Arc::new(builder.finish())])
    }
    fn restore(&mut self, slots: &[u32], state: &[ArrayRef]) -> Result<()> {
        let lists = state[0].as_list::<i32>();
        for (i, &s) in slots.iter().enumerate() {
            let values = lists.value(i);
            let values = values.as_binary::<i32>();
            self.sets[s as usize] = values.iter().flatten().map(Into::into).collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, StringArray};

    use super::*;

    fn run(func: AggFn, arg: ArrayRef, slots: &[u32]) -> ArrayRef {
        let mut acc = create(func, arg.data_type()).unwrap();
        acc.resize(2);
        let rows: Vec<u32> = (0..arg.len() as u32).collect();
        acc.update(Some(&arg), &rows, slots).unwrap();
        // Round-trip through the checkpoint state into a fresh accumulator.
        let state = acc.state(&[0, 1]).unwrap();
        let mut back = create(func, arg.data_type()).unwrap();
        back.resize(2);
        back.restore(&[0, 1], &state).unwrap();
        back.evaluate(&[0, 1]).unwrap()
    }

    #[test]
    fn each_function_by_group_survives_a_state_round_trip() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), None, Some(5), Some(3)]));
        let slots = [0, 0, 1, 0];
        let count = run(AggFn::Count, ints.clone(), &slots);
        assert_eq!(count.as_primitive::<Int64Type>().values(), &[2, 1]);
        let sum = run(AggFn::Sum, ints.clone(), &slots);
        assert_eq!(sum.as_primitive::<Int64Type>().values(), &[6, 5]);
        let avg = run(AggFn::Avg, ints.clone(), &slots);
        assert_eq!(avg.as_primitive::<Float64Type>().values(), &[3.0, 5.0]);
        let distinct = run(AggFn::CountDistinct, ints.clone(), &slots);
        assert_eq!(distinct.as_primitive::<Int64Type>().values(), &[1, 1]);
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["b", "a", "z", "c"]));
        let min = run(AggFn::Min, strings.clone(), &slots);
        assert_eq!(min.as_string::<i32>().value(0), "a");
        let max = run(AggFn::Max, strings.clone(), &slots);
        assert_eq!(max.as_string::<i32>().value(0), "c");
        let latest = run(AggFn::LatestByOffset, strings.clone(), &slots);
        assert_eq!(latest.as_string::<i32>().value(0), "c");
        let earliest = run(AggFn::EarliestByOffset, strings, &slots);
        assert_eq!(earliest.as_string::<i32>().value(0), "b");
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 1.25, 2.0, 0.25]));
        let sum = run(AggFn::Sum, floats, &slots);
        assert_eq!(sum.as_primitive::<Float64Type>().values(), &[2.0, 2.0]);
        let cents: ArrayRef = Arc::new(
            datafusion::arrow::array::Decimal128Array::from(vec![150, 275, 1, 25])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let sum = run(AggFn::Sum, cents, &slots);
        assert_eq!(sum.data_type(), &DataType::Decimal128(38, 2));
        assert_eq!(sum.as_primitive::<Decimal128Type>().values(), &[450, 1]);
    }

    /// A checkpoint's decoder expects the types of the state of no slots
    /// (`Aggregator::checkpoint_types`); a commit writes the state of some: they must agree.
    #[test]
    fn state_types_do_not_depend_on_the_slots() {
        use datafusion::arrow::array::{
            BooleanArray, Decimal128Array, Int64Array, TimestampMillisecondArray,
        };
        let args: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(3), None, Some(5)])),
            Arc::new(Int64Array::from(vec![Some(3), Some(7), None])),
            Arc::new(Float64Array::from(vec![Some(0.5), None, Some(2.0)])),
            Arc::new(StringArray::from(vec![Some("b"), None, Some("a")])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(
                Decimal128Array::from(vec![Some(150), None, Some(1)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1),
                None,
                Some(2),
            ])),
        ];
        let funcs = [
            AggFn::Count,
            AggFn::Sum,
            AggFn::Avg,
            AggFn::Min,
            AggFn::Max,
            AggFn::CountDistinct,
            AggFn::LatestByOffset,
            AggFn::EarliestByOffset,
        ];
        let types = |arrays: Vec<ArrayRef>| -> Vec<DataType> {
            arrays.iter().map(|a| a.data_type().clone()).collect()
        };
        for func in funcs {
            for arg in &args {
                // SUM and AVG of text and booleans are refused at planning.
                let Ok(mut acc) = create(func, arg.data_type()) else {
                    continue;
                };
                acc.resize(2);
                acc.update(Some(arg), &[0, 1, 2], &[0, 1, 0]).unwrap();
                let none = types(acc.state(&[]).unwrap());
                let some = types(acc.state(&[0, 1]).unwrap());
                assert_eq!(none, some, "{func:?} over {}", arg.data_type());
                assert_eq!(none.len(), acc.state_width(), "{func:?}");
            }
        }
    }
}

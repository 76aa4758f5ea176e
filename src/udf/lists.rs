//! `list_mean(list)` and `list_stddev(list)`: the mean and the sample standard deviation
//! (`n − 1` in the denominator; null for fewer than two values) of a list of numbers, nulls
//! ignored. Values are sorted before summing, so the same multiset gives bit-identical results
//! whatever order a group-by collected it in — run files read in any order average alike.

use std::sync::Arc;

use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::args::FloatLists;
use crate::prune::mean_std;
use crate::rows::is_number_list;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Stat {
    Mean,
    StdDev,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ListStat {
    stat: Stat,
    signature: Signature,
}

impl ListStat {
    pub(super) fn new(stat: Stat) -> Self {
        ListStat {
            stat,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ListStat {
    fn name(&self) -> &str {
        match self.stat {
            Stat::Mean => "list_mean",
            Stat::StdDev => "list_stddev",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !is_number_list(&args[0]) {
            return plan_err!(
                "{}: got ({}); expected a list of numbers",
                self.name(),
                args[0]
            );
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let owned = FloatLists::new(&arrays[0])?;
        let lists = owned.view();
        let mut buf = Vec::new();
        let out: Float64Array = (0..lists.len())
            .map(|row| {
                if lists.is_null(row) {
                    return None;
                }
                lists.row_into(row, &mut buf);
                if lists.null_value(row).is_some() {
                    let mut j = lists.range(row).start;
                    buf.retain(|_| {
                        j += 1;
                        lists.is_valid_value(j - 1)
                    });
                }
                let (mean, std) = mean_std(&mut buf);
                match self.stat {
                    Stat::Mean => mean,
                    Stat::StdDev => std,
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use crate::prune::mean_std;

    #[test]
    fn order_does_not_change_a_single_bit() {
        let a = [0.1, 1e16, -1e16, 0.3, 0.7];
        let mut b = [0.7, -1e16, 0.3, 1e16, 0.1];
        let mut a2 = a;
        assert_eq!(mean_std(&mut a2), mean_std(&mut b));
        let (m, s) = mean_std(&mut [1.0, 2.0, 3.0]);
        assert_eq!((m, s), (Some(2.0), Some(1.0)));
        assert_eq!(mean_std(&mut [4.0]), (Some(4.0), None));
    }
}

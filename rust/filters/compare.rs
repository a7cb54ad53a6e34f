//! Comparisons (eq, ne, gt, gte, lt, lte) and the null / emptiness tests: the value is
//! always wrapped in an operator, so a value that looks like an operator is matched as data.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::ops::Op;
use super::support::*;
use super::Leaf;

fn empty_values(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    PyList::new(
        py,
        [
            py.None().into_bound(py),
            PyString::new(py, "").into_any(),
            PyList::empty(py).into_any(),
            PyDict::new(py).into_any(),
        ],
    )
}

/// is_null / is_not_null / is_empty / is_not_empty; `val` may be left out or True/False.
pub(super) fn null_test<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    name: &str,
    op: Op,
    val: &Option<Bound<'py, PyAny>>,
    path: &Path<'_>,
) -> PyResult<Bound<'py, PyDict>> {
    let positive = flag(py, name, val, path)? == matches!(op, Op::IsNull | Op::IsEmpty);
    if matches!(op, Op::IsNull | Op::IsNotNull) {
        let test = if positive { intern!(py, "$eq") } else { intern!(py, "$ne") };
        return field_cond(py, key, test, py.None());
    }
    let test = if positive { intern!(py, "$in") } else { intern!(py, "$nin") };
    field_cond(py, key, test, empty_values(py)?)
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let test = match op {
        Op::Eq => return field_cond(py, leaf.key, intern!(py, "$eq"), &leaf.val),
        Op::Ne => return field_cond(py, leaf.key, intern!(py, "$ne"), &leaf.val),
        Op::Gt => intern!(py, "$gt"),
        Op::Gte => intern!(py, "$gte"),
        Op::Lt => intern!(py, "$lt"),
        Op::Lte => intern!(py, "$lte"),
        other => {
            let problem = format!("operator {other:?} is not a comparison (internal routing error; please report it)");
            return Err(spec_error(py, leaf.path, problem));
        }
    };
    if leaf.val.is_none() {
        return Err(spec_error(
            py,
            leaf.path,
            format!("operator '{}' cannot compare with None; use is_null / is_not_null", leaf.name),
        ));
    }
    field_cond(py, leaf.key, test, &leaf.val)
}

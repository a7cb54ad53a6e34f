//! Specification intake: a tree given as a dict is validated and copied in one walk, with
//! canonical operator names, so what the compiler later reads is the library's own data.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/specs.py` (same results and messages).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::ops::{alias, is_builtin, is_value_optional};
use super::{as_items, spec_error, too_deep_problem, type_name, unknown, Path};
use crate::errors::{guarded, ErrorKind};
use crate::keys::MAX_DEPTH;

static DEEPCOPY: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// What the walk needs besides the node.
struct Intake<'a, 'py> {
    /// custom operator names (a mapping), or None
    custom: Option<&'a Bound<'py, PyAny>>,
    /// a tree built from validated parts: operator names are not looked up again
    trusted: bool,
    /// the `Specification` class: such children contribute their validated tree
    spec_type: Option<&'a Bound<'py, PyAny>>,
}

fn value_too_deep(py: Python<'_>, path: &Path<'_>) -> PyErr {
    spec_error(py, path, format!("the value nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it"))
}

/// An independent copy of a condition's value: plain containers are copied here (depth
/// limited), immutable scalars are shared, anything else goes through `copy.deepcopy`.
fn copy_value<'py>(
    py: Python<'py>,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if val.is_exact_instance_of::<PyString>()
        || val.is_exact_instance_of::<PyInt>()
        || val.is_exact_instance_of::<PyFloat>()
        || val.is_exact_instance_of::<PyBool>()
        || val.is_none()
    {
        return Ok(val.clone());
    }
    let container = val.is_exact_instance_of::<PyDict>()
        || val.is_exact_instance_of::<PyList>()
        || val.is_exact_instance_of::<PyTuple>();
    if container && depth > MAX_DEPTH {
        return Err(value_too_deep(py, path));
    }
    if let Ok(dict) = val.downcast_exact::<PyDict>() {
        let out = PyDict::new(py);
        for (k, v) in dict.iter() {
            out.set_item(k, copy_value(py, &v, path, depth + 1)?)?;
        }
        return Ok(out.into_any());
    }
    if let Ok(list) = val.downcast_exact::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for v in list.iter() {
            items.push(copy_value(py, &v, path, depth + 1)?);
        }
        return Ok(PyList::new(py, items)?.into_any());
    }
    if let Ok(tuple) = val.downcast_exact::<PyTuple>() {
        let mut items = Vec::with_capacity(tuple.len());
        for v in tuple.iter() {
            items.push(copy_value(py, &v, path, depth + 1)?);
        }
        return Ok(PyTuple::new(py, items)?.into_any());
    }
    let deepcopy = DEEPCOPY
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("copy")?.getattr("deepcopy")?.unbind()) })?;
    deepcopy.bind(py).call1((val,)).map_err(|err| {
        if err.is_instance_of::<pyo3::exceptions::PyRecursionError>(py) {
            value_too_deep(py, path)
        } else {
            err
        }
    })
}

/// The canonical name of `op` (aliases resolved, an exact str), or None when not a str.
fn canonical_op<'py>(py: Python<'py>, op: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
    let Ok(s) = op.downcast::<PyString>() else {
        return Ok(None);
    };
    let text = s.to_str()?;
    let canonical = alias(text);
    if op.is_exact_instance_of::<PyString>() && std::ptr::eq(canonical, text) {
        return Ok(Some(s.clone()));
    }
    Ok(Some(PyString::new(py, canonical)))
}

fn group<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyDict>,
    op: Bound<'py, PyString>,
    path: &Path<'_>,
    depth: usize,
    ctx: &Intake<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let name = op.to_str()?;
    let Some(conditions) = node.get_item(intern!(py, "conditions"))? else {
        return Err(spec_error(py, path, format!("'{name}' needs 'conditions' (a list)")));
    };
    let Some(children) = as_items(&conditions) else {
        return Err(spec_error(py, path, format!("'conditions' must be a list, got {}", type_name(&conditions))));
    };
    if name == "not" && children.len() != 1 {
        return Err(spec_error(py, path, format!("'not' takes exactly one condition, got {}", children.len())));
    }
    let mut copies = Vec::with_capacity(children.len());
    for (index, child) in children.iter().enumerate() {
        copies.push(normalize(py, child, &path.child(index), depth + 1, ctx)?);
    }
    let out = PyDict::new(py);
    out.set_item(intern!(py, "op"), op)?;
    out.set_item(intern!(py, "conditions"), PyList::new(py, copies)?)?;
    Ok(out)
}

fn is_custom(ctx: &Intake<'_, '_>, op: &Bound<'_, PyString>) -> PyResult<bool> {
    match ctx.custom {
        Some(custom) => custom.contains(op),
        None => Ok(false),
    }
}

fn leaf<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyDict>,
    op: Bound<'py, PyString>,
    path: &Path<'_>,
    ctx: &Intake<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let name = op.to_str()?;
    let builtin = is_builtin(name);
    if !ctx.trusted && !builtin && !is_custom(ctx, &op)? {
        return Err(unknown(py, name, path));
    }
    let Some(attr) = node.get_item(intern!(py, "attr"))? else {
        return Err(spec_error(py, path, "a condition needs 'attr' (the field path)".to_owned()));
    };
    if !attr.is_instance_of::<PyString>() {
        return Err(spec_error(py, path, format!("field path must be a string, got {}", type_name(&attr))));
    }
    let out = PyDict::new(py);
    out.set_item(intern!(py, "attr"), attr)?;
    match node.get_item(intern!(py, "val"))? {
        Some(val) => {
            out.set_item(intern!(py, "op"), op)?;
            out.set_item(intern!(py, "val"), copy_value(py, &val, path, 1)?)?;
        }
        None if ctx.trusted || is_value_optional(name) || (!builtin && is_custom(ctx, &op)?) => {
            out.set_item(intern!(py, "op"), op)?;
        }
        None => return Err(spec_error(py, path, format!("operator '{name}' needs a 'val'"))),
    }
    Ok(out)
}

fn normalize<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyAny>,
    path: &Path<'_>,
    depth: usize,
    ctx: &Intake<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    if depth > MAX_DEPTH {
        return Err(spec_error(py, path, too_deep_problem()));
    }
    if let Some(spec_type) = ctx.spec_type {
        if !node.is_instance_of::<PyDict>() && node.is_instance(spec_type)? {
            // an already validated Specification: its tree is copied, names trusted
            let tree = node.getattr(intern!(py, "tree"))?;
            let trusted = Intake { custom: ctx.custom, trusted: true, spec_type: ctx.spec_type };
            return normalize(py, &tree, path, depth, &trusted);
        }
    }
    let Ok(node) = node.downcast::<PyDict>() else {
        return Err(spec_error(py, path, format!("a condition must be a dict, got {}", type_name(node))));
    };
    let Some(op_obj) = node.get_item(intern!(py, "op"))? else {
        return Err(spec_error(py, path, "a condition needs 'op'".to_owned()));
    };
    let Some(op) = canonical_op(py, &op_obj)? else {
        return Err(spec_error(py, path, format!("'op' must be a string, got {}", type_name(&op_obj))));
    };
    if matches!(op.to_str()?, "and" | "or" | "not") {
        group(py, node, op, path, depth, ctx)
    } else {
        leaf(py, node, op, path, ctx)
    }
}

/// A validated copy of a specification tree with canonical operator names; raises
/// `InvalidSpecification` naming the first problem and where it is.
#[pyfunction]
#[pyo3(signature = (tree, custom=None, trusted=false, spec_type=None))]
pub fn normalize_spec<'py>(
    py: Python<'py>,
    tree: &Bound<'py, PyAny>,
    custom: Option<&Bound<'py, PyAny>>,
    trusted: bool,
    spec_type: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    guarded(ErrorKind::Specification, || {
        let ctx = Intake { custom, trusted, spec_type };
        normalize(py, tree, &Path::root(), 1, &ctx)
    })
}

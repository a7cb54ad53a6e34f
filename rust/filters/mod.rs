//! Specification tree -> MongoDB filter, ordering -> sort, fields -> projection.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/filters.py` (same results and messages).
//! Values are always wrapped in an operator (`$eq`, `$in`, ...) so they are matched as data;
//! field paths are checked segment by segment with the key rules of `keys.rs`. Each leaf's
//! operator is parsed once into [`ops::Op`] and compiled by its family's file; the tree walk
//! (this file) is depth-limited like every walk over user data.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors::{guarded, ErrorKind};
use crate::keys::MAX_DEPTH;

mod compare;
mod documents;
mod geo;
mod intake;
mod ops;
mod ordering;
mod sets;
mod strings;
mod support;
mod text;

pub use intake::normalize_spec;
use ops::{alias, Op};
pub use ordering::{compile_projection, compile_sort};
use support::*;

/// One leaf being compiled: its field (the caller's object, used as the filter's key, and
/// its text), its value, its operator's canonical name and its place in the tree.
pub(super) struct Leaf<'a, 'py> {
    key: &'a Bound<'py, PyAny>,
    field: &'a str,
    val: Bound<'py, PyAny>,
    name: &'a str,
    path: &'a Path<'a>,
    /// at the top level or in top-level `and` groups (where `$near` / `$text` may go)
    top: bool,
}

/// A custom operator's filter: the registered function of `name` called with
/// `(field, val)`; it must return a dict.
fn custom_leaf<'py>(
    py: Python<'py>,
    name: &str,
    key: &Bound<'py, PyAny>,
    val: Option<Bound<'py, PyAny>>,
    path: &Path<'_>,
    custom: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let custom = match custom {
        Some(c) if c.contains(name)? => c,
        _ => return Err(unknown(py, name, path)),
    };
    let val = val.unwrap_or_else(|| py.None().into_bound(py));
    let result = custom.get_item(name)?.call1((key, val))?;
    result.downcast_into::<PyDict>().map_err(|e| {
        let shown = type_name(&e.into_inner());
        spec_error(py, path, format!("custom operator '{name}' must return a filter dict, got {shown}"))
    })
}

fn compile_leaf<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyDict>,
    name: &str,
    op: Option<Op>,
    path: &Path<'_>,
    top: bool,
    custom: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let Some(key) = node.get_item(intern!(py, "attr"))? else {
        return Err(spec_error(py, path, "a condition needs 'attr' (the field path)".to_owned()));
    };
    let Ok(attr) = key.downcast::<PyString>() else {
        return Err(spec_error(py, path, format!("field path must be a string, got {}", type_name(&key))));
    };
    let field = attr.to_str()?;
    if let Some(problem) = str_path_problem(py, field) {
        return Err(spec_error(py, path, problem));
    }
    let val = node.get_item(intern!(py, "val"))?;
    let op = match op {
        Some(op) if op.value_optional() => return compare::null_test(py, &key, name, op, &val, path),
        Some(Op::NoEquivalent(hint)) => {
            return Err(spec_error(py, path, format!("operator '{name}' has no exact MongoDB equivalent: {hint}")))
        }
        Some(op) => op,
        None => return custom_leaf(py, name, &key, val, path, custom),
    };
    let Some(val) = val else {
        return Err(spec_error(py, path, format!("operator '{name}' needs a 'val'")));
    };
    let leaf = Leaf { key: &key, field, val, name, path, top };
    match op {
        Op::Text(pattern, options, negated) => strings::compile(py, &leaf, pattern, options, negated),
        Op::In | Op::NotIn | Op::All | Op::Between | Op::NotBetween => sets::compile(py, &leaf, op),
        Op::JsonContains | Op::JsonHasKey | Op::JsonPathExists | Op::JsonHasAny | Op::JsonHasAll | Op::Size => {
            documents::compile(py, &leaf, op)
        }
        Op::Within | Op::Intersects | Op::Disjoint | Op::DistanceLt | Op::Dwithin | Op::Near => {
            geo::compile(py, &leaf, op)
        }
        Op::Fts | Op::FtsPhrase => text::compile(py, &leaf, op),
        _ => compare::compile(py, &leaf, op),
    }
}

/// What a compiled node is, so parents can flatten without looking inside it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Neither `{}` nor a single-key `$and` / `$or` document.
    Plain,
    /// `{}` (matches everything).
    Empty,
    /// `{"$and": [...]}` / `{"$or": [...]}` built here.
    And,
    Or,
    /// Not known without looking (custom operators, operators that may emit `$and`/`$or`).
    Unknown,
}

fn leaf_kind(op: Option<Op>) -> Kind {
    match op {
        Some(op) if !op.may_emit_group() => Kind::Plain,
        _ => Kind::Unknown,
    }
}

fn compile_node<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyAny>,
    path: &Path<'_>,
    depth: usize,
    top: bool,
    custom: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyDict>, Kind)> {
    if depth > MAX_DEPTH {
        return Err(spec_error(py, path, too_deep_problem()));
    }
    let Ok(node) = node.downcast::<PyDict>() else {
        return Err(spec_error(py, path, format!("a condition must be a dict, got {}", type_name(node))));
    };
    let Some(op_obj) = node.get_item(intern!(py, "op"))? else {
        return Err(spec_error(py, path, "a condition needs 'op'".to_owned()));
    };
    let Ok(op_str) = op_obj.downcast::<PyString>() else {
        return Err(spec_error(py, path, format!("'op' must be a string, got {}", type_name(&op_obj))));
    };
    let op = op_str.to_str()?;
    if op != "and" && op != "or" && op != "not" {
        let name = alias(op);
        let parsed = Op::parse(name);
        return Ok((compile_leaf(py, node, name, parsed, path, top, custom)?, leaf_kind(parsed)));
    }
    let Some(conditions) = node.get_item(intern!(py, "conditions"))? else {
        return Err(spec_error(py, path, format!("'{op}' needs 'conditions' (a list)")));
    };
    let Some(children) = as_items(&conditions) else {
        return Err(spec_error(py, path, format!("'conditions' must be a list, got {}", type_name(&conditions))));
    };
    if op == "not" {
        if children.len() != 1 {
            return Err(spec_error(py, path, format!("'not' takes exactly one condition, got {}", children.len())));
        }
        let (inner, _) = compile_node(py, &children[0], &path.child(0), depth + 1, false, custom)?;
        return Ok((wrap(py, intern!(py, "$nor"), vec![inner])?, Kind::Plain));
    }
    let is_and = op == "and";
    let (key, own) = if is_and { (intern!(py, "$and"), Kind::And) } else { (intern!(py, "$or"), Kind::Or) };
    let mut parts: Vec<(Bound<'py, PyDict>, Kind)> = Vec::with_capacity(children.len());
    for (index, child) in children.iter().enumerate() {
        let (compiled, mut kind) = compile_node(py, child, &path.child(index), depth + 1, top && is_and, custom)?;
        if kind == Kind::Unknown {
            // resolved only as far as this group needs; a parent of the other kind looks again
            if compiled.is_empty() {
                kind = Kind::Empty;
            } else if compiled.len() == 1 && compiled.contains(key)? {
                kind = own;
            }
        }
        if kind == own {
            if let Some(members) = group_members(&compiled, key)? {
                parts.extend(members.into_iter().map(|d| (d, Kind::Unknown)));
                continue;
            }
        }
        if is_and && kind == Kind::Empty {
            continue;
        }
        parts.push((compiled, kind));
    }
    if parts.is_empty() {
        return if is_and { Ok((PyDict::new(py), Kind::Empty)) } else { Ok((match_nothing(py)?, Kind::Plain)) };
    }
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return Ok(only);
        }
    }
    let dicts: Vec<Bound<'py, PyDict>> = parts.into_iter().map(|(d, _)| d).collect();
    Ok((wrap(py, key, dicts)?, own))
}

/// The conditions of a `{key: [...]}` group, when its value is a list of dicts (groups
/// built here always are; a custom operator's result may not be, and is then kept whole).
fn group_members<'py>(
    compiled: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Vec<Bound<'py, PyDict>>>> {
    let Some(inner) = compiled.get_item(key)? else {
        return Ok(None);
    };
    let Ok(list) = inner.downcast::<PyList>() else {
        return Ok(None);
    };
    let mut members = Vec::with_capacity(list.len());
    for item in list.iter() {
        match item.downcast_into::<PyDict>() {
            Ok(d) => members.push(d),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(members))
}

/// Compile a specification tree to a MongoDB filter document.
#[pyfunction]
#[pyo3(signature = (spec, custom=None))]
pub fn compile_filter<'py>(
    py: Python<'py>,
    spec: &Bound<'py, PyAny>,
    custom: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    guarded(ErrorKind::Specification, || Ok(compile_node(py, spec, &Path::root(), 1, true, custom)?.0))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile_filter, m)?)?;
    m.add_function(wrap_pyfunction!(compile_sort, m)?)?;
    m.add_function(wrap_pyfunction!(compile_projection, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_spec, m)?)?;
    Ok(())
}

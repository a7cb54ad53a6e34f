//! Specification tree -> MongoDB filter, ordering -> sort, fields -> projection.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/filters.py` (same results and messages).
//! Values are always wrapped in an operator (`$eq`, `$in`, ...) so they are matched as data;
//! field paths are checked segment by segment with the key rules of `keys.rs`.
use pyo3::exceptions::PyOverflowError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{guarded, invalid_specification, ErrorKind};

mod intake;
mod ops;

use crate::keys::{display_path, key_problem, MAX_DEPTH};
pub use intake::normalize_spec;
use ops::{alias, is_builtin, no_equivalent, string_op};

const EARTH_RADIUS_M: f64 = 6378100.0;
const GEO_ALL: &[&str] = &["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];
const GEO_AREAS: &[&str] = &["Polygon", "MultiPolygon"];
const GEO_POINT: &[&str] = &["Point"];
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

static RE_COMPILE: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static RE_ERROR: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static RE_PATTERN: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static BSON_REGEX: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

fn cached<'py>(
    py: Python<'py>,
    cell: &'static GILOnceCell<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let obj = cell.get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import(module)?.getattr(name)?.unbind()) })?;
    Ok(obj.bind(py).clone())
}

/// Where a node sits in the tree; rendered only when an error names it.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<(&'a Path<'a>, usize)>,
}

impl<'a> Path<'a> {
    fn root() -> Self {
        Path { parent: None }
    }
    fn child(&'a self, index: usize) -> Path<'a> {
        Path { parent: Some((self, index)) }
    }
    fn render(&self) -> String {
        match self.parent {
            None => String::new(),
            Some((p, i)) => {
                let base = p.render();
                if base.is_empty() {
                    format!("conditions[{i}]")
                } else {
                    format!("{base}.conditions[{i}]")
                }
            }
        }
    }
}

fn spec_error(_py: Python<'_>, path: &Path<'_>, problem: String) -> PyErr {
    let rendered = path.render();
    invalid_specification(format!("invalid specification at '{}': {}", display_path(&rendered), problem))
}

/// The problem named when a specification tree nests deeper than MongoDB documents may.
fn too_deep_problem() -> String {
    format!("the specification nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it")
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

fn repr(v: &Bound<'_, PyAny>) -> String {
    v.repr().map(|r| r.to_string()).unwrap_or_default()
}

fn repr_str(py: Python<'_>, s: &str) -> String {
    repr(PyString::new(py, s).as_any())
}

fn opt_repr(v: &Option<Bound<'_, PyAny>>) -> String {
    match v {
        Some(x) => repr(x),
        None => "None".to_owned(),
    }
}

/// Why `attr` is not a usable field path, if it is not.
fn field_path_problem(py: Python<'_>, attr: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let Ok(s) = attr.downcast::<PyString>() else {
        return Ok(Some(format!("field path must be a string, got {}", type_name(attr))));
    };
    let text = s.to_str()?;
    Ok(str_path_problem(py, text))
}

/// Fast check of the rules below in one pass over the bytes (the common, valid case).
fn path_ok(text: &str) -> bool {
    let mut segment_start = true;
    for &c in text.as_bytes() {
        if (segment_start && (c == b'.' || c == b'$')) || c == 0 {
            return false;
        }
        segment_start = c == b'.';
    }
    !segment_start
}

fn str_path_problem(py: Python<'_>, text: &str) -> Option<String> {
    if path_ok(text) {
        return None;
    }
    for segment in text.split('.') {
        let problem = if segment.is_empty() { Some("empty segment") } else { key_problem(segment) };
        if let Some(p) = problem {
            return Some(format!("invalid field path {}: {}", repr_str(py, text), p));
        }
    }
    None
}

// --- text helpers -------------------------------------------------------------------------
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' | '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => {
            out.push('\\');
            out.push(c);
        }
        '\0' => out.push_str("\\x00"),
        _ => out.push(c),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn like_to_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push('^');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            push_escaped(&mut out, chars[i + 1]);
            i += 2;
            continue;
        }
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            _ => push_escaped(&mut out, c),
        }
        i += 1;
    }
    out.push_str("\\z");
    out
}

fn words(text: &str) -> Vec<&str> {
    text.split(|c| WHITESPACE.contains(&c)).filter(|w| !w.is_empty()).collect()
}

fn regex_dict<'py>(py: Python<'py>, pattern: &str, options: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "$regex"), pattern)?;
    if !options.is_empty() {
        d.set_item(intern!(py, "$options"), options)?;
    }
    Ok(d)
}

fn field_cond<'py>(
    py: Python<'py>,
    field: impl IntoPyObject<'py>,
    op: &Bound<'py, PyString>,
    val: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let inner = PyDict::new(py);
    inner.set_item(op, val)?;
    let outer = PyDict::new(py);
    outer.set_item(field, inner)?;
    Ok(outer)
}

fn wrap<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyString>,
    parts: Vec<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(key, PyList::new(py, parts)?)?;
    Ok(d)
}

fn match_nothing(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    wrap(py, intern!(py, "$nor"), vec![PyDict::new(py)])
}

// --- value checks -------------------------------------------------------------------------
fn need_str<'a, 'py>(
    py: Python<'py>,
    op: &str,
    val: &'a Bound<'py, PyAny>,
    path: &Path<'_>,
) -> PyResult<&'a Bound<'py, PyString>> {
    val.downcast::<PyString>()
        .map_err(|_| spec_error(py, path, format!("operator '{op}' expects a string, got {}", type_name(val))))
}

fn as_items<'py>(val: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(l) = val.downcast::<PyList>() {
        Some(l.iter().collect())
    } else if let Ok(t) = val.downcast::<PyTuple>() {
        Some(t.iter().collect())
    } else {
        None
    }
}

fn need_list<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    as_items(val).ok_or_else(|| spec_error(py, path, format!("operator '{op}' expects a list, got {}", type_name(val))))
}

fn no_regex_elements(py: Python<'_>, op: &str, items: &[Bound<'_, PyAny>], path: &Path<'_>) -> PyResult<()> {
    if items.iter().all(|i| {
        i.is_instance_of::<PyString>() || i.is_instance_of::<PyInt>() || i.is_instance_of::<PyFloat>() || i.is_none()
    }) {
        return Ok(());
    }
    let pattern = cached(py, &RE_PATTERN, "re", "Pattern")?;
    let regex = cached(py, &BSON_REGEX, "bson.regex", "Regex")?;
    for item in items {
        if item.is_instance_of::<PyString>()
            || item.is_instance_of::<PyInt>()
            || item.is_instance_of::<PyFloat>()
            || item.is_none()
        {
            continue;
        }
        if item.is_instance(&pattern)? || item.is_instance(&regex)? {
            return Err(spec_error(
                py,
                path,
                format!(
                    "operator '{op}' got a regular expression object as a value; MongoDB would interpret it as a pattern: use regex for patterns or pass the text"
                ),
            ));
        }
    }
    Ok(())
}

fn need_number(py: Python<'_>, op: &str, name: &str, val: &Bound<'_, PyAny>, path: &Path<'_>) -> PyResult<f64> {
    if val.is_instance_of::<PyBool>() || !(val.is_instance_of::<PyInt>() || val.is_instance_of::<PyFloat>()) {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects '{name}' to be a number, got {}", type_name(val)),
        ));
    }
    let number: f64 = match val.extract() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => f64::INFINITY, // an int beyond float range
        Err(e) => return Err(e),
    };
    if !number.is_finite() || number < 0.0 {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects '{name}' to be a finite number >= 0, got {}", repr(val)),
        ));
    }
    Ok(number)
}

fn flag(py: Python<'_>, op: &str, val: &Option<Bound<'_, PyAny>>, path: &Path<'_>) -> PyResult<bool> {
    match val {
        None => Ok(true),
        Some(v) if v.is_none() => Ok(true),
        Some(v) => match v.downcast::<PyBool>() {
            Ok(b) => Ok(b.is_true()),
            Err(_) => {
                Err(spec_error(py, path, format!("operator '{op}' takes no value or True/False, got {}", type_name(v))))
            }
        },
    }
}

fn key_in(key: &Bound<'_, PyAny>, allowed: &[&str]) -> PyResult<bool> {
    match key.downcast::<PyString>() {
        Ok(s) => {
            let k = s.to_str()?;
            Ok(allowed.contains(&k))
        }
        Err(_) => Ok(false),
    }
}

type Geometry<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

/// Validate a GeoJSON geometry; returns (type, coordinates, crs).
fn check_geometry<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Geometry<'py>> {
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry {{'type': ..., 'coordinates': [...]}}, got {}",
                type_name(val)
            ),
        ));
    };
    for key in d.keys() {
        if !key_in(&key, &["type", "coordinates", "crs"])? {
            return Err(spec_error(
                py,
                path,
                format!(
                    "GeoJSON geometry has unexpected key {}; only 'type', 'coordinates' and 'crs' are allowed",
                    repr(&key)
                ),
            ));
        }
    }
    let kind = d.get_item(intern!(py, "type"))?;
    let kind_ok = match &kind {
        Some(k) => key_in(k, allowed)?,
        None => false,
    };
    let (Some(kind), true) = (kind.clone(), kind_ok) else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry of type {}, got type {}",
                allowed.join(" or "),
                opt_repr(&kind)
            ),
        ));
    };
    let coordinates = match d.get_item(intern!(py, "coordinates"))? {
        Some(c) if c.is_instance_of::<PyList>() || c.is_instance_of::<PyTuple>() => c,
        other => {
            let shown = other.as_ref().map_or_else(|| "NoneType".to_owned(), type_name);
            return Err(spec_error(py, path, format!("GeoJSON 'coordinates' must be a list, got {shown}")));
        }
    };
    Ok((kind, coordinates, d.get_item(intern!(py, "crs"))?))
}

/// A clean copy of a validated GeoJSON geometry (only its known keys).
fn geometry<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let (kind, coordinates, crs) = check_geometry(py, op, val, path, allowed)?;
    let out = PyDict::new(py);
    out.set_item(intern!(py, "type"), kind)?;
    out.set_item(intern!(py, "coordinates"), coordinates)?;
    if let Some(crs) = crs {
        out.set_item(intern!(py, "crs"), crs)?;
    }
    Ok(out)
}

fn payload<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>)> {
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects a dict with keys {}, got {}", allowed.join(", "), type_name(val)),
        ));
    };
    for key in d.keys() {
        if !key_in(&key, allowed)? {
            return Err(spec_error(
                py,
                path,
                format!("operator '{op}' got unexpected key {}; allowed: {}", repr(&key), allowed.join(", ")),
            ));
        }
    }
    let Some(geometry) = d.get_item(intern!(py, "geometry"))? else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a 'geometry' (a GeoJSON Point)")));
    };
    Ok((d.clone(), geometry))
}

fn json_contains<'py>(
    py: Python<'py>,
    field: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<Bound<'py, PyDict>>,
) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator 'json_contains' value nests deeper than {MAX_DEPTH} levels (MongoDB's limit) at '{field}'"
            ),
        ));
    }
    let d = match val.downcast::<PyDict>() {
        Ok(d) if !d.is_empty() => d,
        _ => {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' expects a non-empty dict, got {}", repr(val)),
            ))
        }
    };
    for (key, item) in d.iter() {
        let Ok(k) = key.downcast::<PyString>() else {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' expects string keys, got {}", repr(&key)),
            ));
        };
        let k = k.to_str()?;
        let problem = if k.is_empty() { Some("empty segment") } else { key_problem(k) };
        if let Some(p) = problem {
            return Err(spec_error(py, path, format!("invalid key {} in 'json_contains': {p}", repr(&key))));
        }
        let sub = dotted(field, k);
        if item.is_instance_of::<PyDict>() {
            json_contains(py, &sub, &item, path, depth + 1, out)?;
        } else if let Some(items) = as_items(&item) {
            for element in &items {
                if element.is_instance_of::<PyDict>()
                    || element.is_instance_of::<PyList>()
                    || element.is_instance_of::<PyTuple>()
                {
                    return Err(spec_error(
                        py,
                        path,
                        "operator 'json_contains' supports lists of scalars only".to_owned(),
                    ));
                }
            }
            no_regex_elements(py, "json_contains", &items, path)?;
            out.push(field_cond(py, &sub, intern!(py, "$all"), PyList::new(py, items)?)?);
        } else {
            no_regex_elements(py, "json_contains", std::slice::from_ref(&item), path)?;
            out.push(field_cond(py, &sub, intern!(py, "$eq"), item)?);
        }
    }
    Ok(())
}

fn key_list<'py>(py: Python<'py>, op: &str, val: &Bound<'py, PyAny>, path: &Path<'_>) -> PyResult<Vec<String>> {
    let keys = need_list(py, op, val, path)?;
    if keys.is_empty() {
        return Err(spec_error(py, path, format!("operator '{op}' needs at least one key")));
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in &keys {
        if let Some(problem) = field_path_problem(py, key)? {
            return Err(spec_error(py, path, format!("operator '{op}': {problem}")));
        }
        out.push(key.downcast::<PyString>()?.to_str()?.to_owned());
    }
    Ok(out)
}

fn dotted(field: &str, key: &str) -> String {
    let mut s = String::with_capacity(field.len() + 1 + key.len());
    s.push_str(field);
    s.push('.');
    s.push_str(key);
    s
}

fn exists_cond<'py>(py: Python<'py>, field: &str, key: &str) -> PyResult<Bound<'py, PyDict>> {
    field_cond(py, dotted(field, key), intern!(py, "$exists"), true)
}

fn unknown(py: Python<'_>, op: &str, path: &Path<'_>) -> PyErr {
    spec_error(
        py,
        path,
        format!(
            "unknown operator {}; use one listed in docs/specifications.md or register it on the registry",
            repr_str(py, op)
        ),
    )
}

fn nested_only_top(py: Python<'_>, op: &str, path: &Path<'_>) -> PyErr {
    spec_error(
        py,
        path,
        format!(
            "operator '{op}' is only allowed at the top level or inside top-level 'and' groups (MongoDB rejects $near and $text under $or / $nor)"
        ),
    )
}

// --- leaves ------------------------------------------------------------------------------------
fn compile_string<'py>(
    py: Python<'py>,
    field: &Bound<'py, PyAny>,
    op: &str,
    kind: &str,
    options: &str,
    text_obj: &Bound<'py, PyString>,
    path: &Path<'_>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = text_obj.to_str()?;
    let out = PyDict::new(py);
    match kind {
        "regex" => {
            let compile = cached(py, &RE_COMPILE, "re", "compile")?;
            if let Err(e) = compile.call1((text_obj,)) {
                let re_error = cached(py, &RE_ERROR, "re", "error")?;
                if e.is_instance(py, &re_error) {
                    let msg = e.value(py).str()?.to_string();
                    return Err(spec_error(
                        py,
                        path,
                        format!("invalid regular expression {}: {msg}", repr(text_obj.as_any())),
                    ));
                }
                return Err(e);
            }
            out.set_item(field, regex_dict(py, text, options)?)?;
            Ok(out)
        }
        "like" => {
            out.set_item(field, regex_dict(py, &like_to_regex(text), options)?)?;
            if op == "not_like" {
                wrap(py, intern!(py, "$nor"), vec![out])
            } else {
                Ok(out)
            }
        }
        _ => {
            let mut pattern = String::with_capacity(text.len() + 4);
            if kind == "startswith" {
                pattern.push('^');
            }
            pattern.push_str(&escape(text));
            if kind == "endswith" {
                pattern.push_str("\\z");
            }
            out.set_item(field, regex_dict(py, &pattern, options)?)?;
            Ok(out)
        }
    }
}

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

fn compile_leaf<'py>(
    py: Python<'py>,
    node: &Bound<'py, PyDict>,
    op: &str,
    builtin: bool,
    path: &Path<'_>,
    top: bool,
    custom: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let Some(attr) = node.get_item(intern!(py, "attr"))? else {
        return Err(spec_error(py, path, "a condition needs 'attr' (the field path)".to_owned()));
    };
    let Ok(attr_str) = attr.downcast::<PyString>() else {
        return Err(spec_error(py, path, format!("field path must be a string, got {}", type_name(&attr))));
    };
    let field: &str = attr_str.to_str()?;
    if let Some(problem) = str_path_problem(py, field) {
        return Err(spec_error(py, path, problem));
    }
    let fkey = &attr;
    let val_opt = node.get_item(intern!(py, "val"))?;
    match op {
        "is_null" | "is_not_null" | "is_empty" | "is_not_empty" => {
            let positive = flag(py, op, &val_opt, path)? == (op == "is_null" || op == "is_empty");
            if op == "is_null" || op == "is_not_null" {
                let key = if positive { intern!(py, "$eq") } else { intern!(py, "$ne") };
                return field_cond(py, fkey, key, py.None());
            }
            let key = if positive { intern!(py, "$in") } else { intern!(py, "$nin") };
            return field_cond(py, fkey, key, empty_values(py)?);
        }
        _ => {}
    }
    if let Some(hint) = no_equivalent(op) {
        return Err(spec_error(py, path, format!("operator '{op}' has no exact MongoDB equivalent: {hint}")));
    }
    if !builtin {
        if let Some(c) = custom {
            if c.contains(op)? {
                let f = c.get_item(op)?;
                let val = match &val_opt {
                    Some(v) => v.clone(),
                    None => py.None().into_bound(py),
                };
                let result = f.call1((fkey, val))?;
                return match result.downcast_into::<PyDict>() {
                    Ok(d) => Ok(d),
                    Err(e) => {
                        let obj = e.into_inner();
                        Err(spec_error(
                            py,
                            path,
                            format!("custom operator '{op}' must return a filter dict, got {}", type_name(&obj)),
                        ))
                    }
                };
            }
        }
        return Err(unknown(py, op, path));
    }
    let Some(val) = val_opt else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a 'val'")));
    };
    match op {
        "eq" => field_cond(py, fkey, intern!(py, "$eq"), val),
        "ne" => field_cond(py, fkey, intern!(py, "$ne"), val),
        "gt" | "gte" | "lt" | "lte" => {
            if val.is_none() {
                return Err(spec_error(
                    py,
                    path,
                    format!("operator '{op}' cannot compare with None; use is_null / is_not_null"),
                ));
            }
            let key = match op {
                "gt" => intern!(py, "$gt"),
                "gte" => intern!(py, "$gte"),
                "lt" => intern!(py, "$lt"),
                _ => intern!(py, "$lte"),
            };
            field_cond(py, fkey, key, val)
        }
        "in" | "not_in" | "all" => {
            let items = need_list(py, op, &val, path)?;
            no_regex_elements(py, op, &items, path)?;
            if items.iter().any(|i| i.is_instance_of::<PyDict>()) {
                // documents inside $in/$nin/$all would be read as operators: one $eq per value.
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(field_cond(py, fkey, intern!(py, "$eq"), item)?);
                }
                if op == "not_in" {
                    return wrap(py, intern!(py, "$nor"), parts);
                }
                let key = if op == "all" { intern!(py, "$and") } else { intern!(py, "$or") };
                return one_or_group(py, key, parts);
            }
            let key = match op {
                "in" => intern!(py, "$in"),
                "not_in" => intern!(py, "$nin"),
                _ => intern!(py, "$all"),
            };
            field_cond(py, fkey, key, PyList::new(py, items)?)
        }
        "between" | "not_between" => {
            let bounds = need_list(py, op, &val, path)?;
            if bounds.len() != 2 || bounds[0].is_none() || bounds[1].is_none() {
                return Err(spec_error(
                    py,
                    path,
                    format!("operator '{op}' expects [low, high] (two values, not None), got {}", repr(&val)),
                ));
            }
            let inner = PyDict::new(py);
            inner.set_item(intern!(py, "$gte"), &bounds[0])?;
            inner.set_item(intern!(py, "$lte"), &bounds[1])?;
            let cond = PyDict::new(py);
            cond.set_item(fkey, inner)?;
            if op == "between" {
                Ok(cond)
            } else {
                wrap(py, intern!(py, "$nor"), vec![cond])
            }
        }
        "json_contains" => {
            let mut parts = Vec::new();
            json_contains(py, field, &val, path, 1, &mut parts)?;
            one_or_group(py, intern!(py, "$and"), parts)
        }
        "json_has_key" | "json_path_exists" => {
            let key_obj = need_str(py, op, &val, path)?;
            let mut key = key_obj.to_str()?;
            if op == "json_path_exists" {
                if let Some(rest) = key.strip_prefix("$.") {
                    key = rest;
                }
            }
            if let Some(problem) = str_path_problem(py, key) {
                return Err(spec_error(py, path, format!("operator '{op}': {problem}")));
            }
            exists_cond(py, field, key)
        }
        "json_has_any" | "json_has_all" => {
            let keys = key_list(py, op, &val, path)?;
            let mut parts = Vec::with_capacity(keys.len());
            for key in &keys {
                parts.push(exists_cond(py, field, key)?);
            }
            let key = if op == "json_has_any" { intern!(py, "$or") } else { intern!(py, "$and") };
            one_or_group(py, key, parts)
        }
        "size" => {
            let ok = !val.is_instance_of::<PyBool>() && val.is_instance_of::<PyInt>() && !val.lt(0)?;
            if !ok {
                return Err(spec_error(
                    py,
                    path,
                    format!("operator 'size' expects an integer >= 0, got {}", repr(&val)),
                ));
            }
            field_cond(py, fkey, intern!(py, "$size"), val)
        }
        "within" | "intersects" | "disjoint" => {
            let allowed = if op == "within" { GEO_AREAS } else { GEO_ALL };
            let geom = geometry(py, op, &val, path, allowed)?;
            let inner = PyDict::new(py);
            inner.set_item(intern!(py, "$geometry"), geom)?;
            if op == "within" {
                return field_cond(py, fkey, intern!(py, "$geoWithin"), inner);
            }
            let cond = field_cond(py, fkey, intern!(py, "$geoIntersects"), inner)?;
            if op == "intersects" {
                Ok(cond)
            } else {
                wrap(py, intern!(py, "$nor"), vec![cond])
            }
        }
        "dwithin" | "distance_lt" => {
            let (p, g) = payload(py, op, &val, path, &["geometry", "distance"])?;
            let (_, coords, _) = check_geometry(py, op, &g, path, GEO_POINT)?;
            let Some(distance) = p.get_item(intern!(py, "distance"))? else {
                return Err(spec_error(py, path, format!("operator '{op}' needs a 'distance' in meters")));
            };
            let meters = need_number(py, op, "distance", &distance, path)?;
            let sphere = PyList::new(py, [coords, PyFloat::new(py, meters / EARTH_RADIUS_M).into_any()])?;
            let inner = PyDict::new(py);
            inner.set_item(intern!(py, "$centerSphere"), sphere)?;
            field_cond(py, fkey, intern!(py, "$geoWithin"), inner)
        }
        "near" => {
            if !top {
                return Err(nested_only_top(py, op, path));
            }
            let (p, g) = payload(py, op, &val, path, &["geometry", "max_distance", "min_distance"])?;
            let near = PyDict::new(py);
            near.set_item(intern!(py, "$geometry"), geometry(py, op, &g, path, GEO_POINT)?)?;
            if let Some(m) = p.get_item(intern!(py, "max_distance"))? {
                near.set_item(intern!(py, "$maxDistance"), need_number(py, op, "max_distance", &m, path)?)?;
            }
            if let Some(m) = p.get_item(intern!(py, "min_distance"))? {
                near.set_item(intern!(py, "$minDistance"), need_number(py, op, "min_distance", &m, path)?)?;
            }
            field_cond(py, fkey, intern!(py, "$near"), near)
        }
        "fts" | "fts_phrase" => {
            if !top {
                return Err(nested_only_top(py, op, path));
            }
            let text = need_str(py, op, &val, path)?.to_str()?;
            let search = if op == "fts" {
                let ws: Vec<String> = words(text)
                    .into_iter()
                    .map(|w| w.replace('"', "").trim_start_matches('-').to_owned())
                    .filter(|w| !w.is_empty())
                    .collect();
                if ws.is_empty() {
                    String::new()
                } else {
                    ws.join(" ")
                }
            } else {
                let cleaned = text.replace('"', "");
                let ws = words(&cleaned);
                if ws.is_empty() {
                    String::new()
                } else {
                    format!("\"{}\"", ws.join(" "))
                }
            };
            if search.is_empty() {
                return Err(spec_error(py, path, format!("operator '{op}' needs at least one word to search for")));
            }
            let inner = PyDict::new(py);
            inner.set_item(intern!(py, "$search"), search)?;
            let out = PyDict::new(py);
            out.set_item(intern!(py, "$text"), inner)?;
            Ok(out)
        }
        _ => {
            let (kind, options) = string_op(op).ok_or_else(|| unknown(py, op, path))?;
            let text = need_str(py, op, &val, path)?;
            compile_string(py, fkey, op, kind, options, text, path)
        }
    }
}

// --- tree ----------------------------------------------------------------------------------------
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

fn leaf_kind(op: &str, builtin: bool) -> Kind {
    match op {
        _ if !builtin => Kind::Unknown,
        "json_contains" | "json_has_any" | "json_has_all" | "in" | "all" => Kind::Unknown,
        _ => Kind::Plain,
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
        let canonical = alias(op);
        let builtin = is_builtin(canonical);
        return Ok((compile_leaf(py, node, canonical, builtin, path, top, custom)?, leaf_kind(canonical, builtin)));
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

/// `parts[0]` alone, or `{key: parts}`.
fn one_or_group<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyString>,
    mut parts: Vec<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return Ok(only);
        }
    }
    wrap(py, key, parts)
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

// --- ordering and projection ---------------------------------------------------------------------
fn sort_error(_py: Python<'_>, item: &Bound<'_, PyAny>, problem: String) -> PyErr {
    invalid_specification(format!("invalid ordering {}: {problem}", repr(item)))
}

/// 1 / -1 for a direction given as an int (not a bool), a float, or 'asc' / 'desc'; the
/// value's own comparison methods are not asked (they may raise or lie).
fn sort_direction(raw: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let number = if raw.is_instance_of::<PyBool>() {
        None
    } else if raw.is_instance_of::<PyInt>() {
        raw.extract::<i64>().ok()
    } else if let Ok(f) = raw.downcast::<PyFloat>() {
        let f = f.value();
        (f == 1.0 || f == -1.0).then_some(f as i64)
    } else if let Ok(s) = raw.downcast::<PyString>() {
        match s.to_str()? {
            "asc" => Some(1),
            "desc" => Some(-1),
            _ => None,
        }
    } else {
        None
    };
    Ok(number.filter(|n| *n == 1 || *n == -1))
}

fn sort_item(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<(String, i64)> {
    let (name, direction): (String, i64) = if let Ok(s) = item.downcast::<PyString>() {
        let text = s.to_str()?.trim_matches(|c| WHITESPACE.contains(&c));
        if let Some(rest) = text.strip_prefix('-') {
            (rest.to_owned(), -1)
        } else if let Some(rest) = text.strip_prefix('+') {
            (rest.to_owned(), 1)
        } else {
            (text.to_owned(), 1)
        }
    } else if let Some(pair) = as_items(item).filter(|p| p.len() == 2) {
        let Some(direction) = sort_direction(&pair[1])? else {
            return Err(sort_error(py, item, "direction must be 1, -1, 'asc' or 'desc'".to_owned()));
        };
        let is_asc = direction == 1;
        if let Some(problem) = field_path_problem(py, &pair[0])? {
            return Err(sort_error(py, item, problem));
        }
        (pair[0].downcast::<PyString>()?.to_str()?.to_owned(), if is_asc { 1 } else { -1 })
    } else {
        return Err(sort_error(py, item, "use 'field', '-field' or (field, 1 | -1)".to_owned()));
    };
    if let Some(problem) = str_path_problem(py, &name) {
        return Err(sort_error(py, item, problem));
    }
    Ok((name, direction))
}

/// `"-created_at,name"` / `["-created_at", ("name", 1)]` -> `[("created_at", -1), ("name", 1)]`.
#[pyfunction]
pub fn compile_sort<'py>(py: Python<'py>, order_by: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    guarded(ErrorKind::Specification, || {
        let out = PyList::empty(py);
        if order_by.is_none() {
            return Ok(out);
        }
        let items: Vec<Bound<'py, PyAny>> = if let Ok(s) = order_by.downcast::<PyString>() {
            s.to_str()?.split(',').map(|p| PyString::new(py, p).into_any()).collect()
        } else if let Some(items) = as_items(order_by) {
            items
        } else {
            return Err(sort_error(py, order_by, "expected a string or a list of fields".to_owned()));
        };
        let mut seen: Vec<String> = Vec::with_capacity(items.len());
        for item in &items {
            let (name, direction) = sort_item(py, item)?;
            if seen.contains(&name) {
                return Err(sort_error(py, item, format!("field {} is ordered twice", repr_str(py, &name))));
            }
            out.append(PyTuple::new(
                py,
                [name.clone().into_pyobject(py)?.into_any(), direction.into_pyobject(py)?.into_any()],
            )?)?;
            seen.push(name);
        }
        Ok(out)
    })
}

/// `["name", "address.city"]` -> `{"name": 1, "address.city": 1}`; None or empty -> None.
#[pyfunction]
pub fn compile_projection<'py>(py: Python<'py>, fields: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    guarded(ErrorKind::Specification, || {
        if fields.is_none() {
            return Ok(None);
        }
        let items: Vec<Bound<'py, PyAny>> = if fields.is_instance_of::<PyString>() {
            vec![fields.clone()]
        } else if let Some(items) = as_items(fields) {
            items
        } else {
            return Err(invalid_specification(format!(
                "invalid field selection {}: expected a list of field paths",
                repr(fields)
            )));
        };
        if items.is_empty() {
            return Ok(None);
        }
        let out = PyDict::new(py);
        for item in &items {
            if let Some(problem) = field_path_problem(py, item)? {
                return Err(invalid_specification(format!("invalid field selection {}: {problem}", repr(item))));
            }
            out.set_item(item, 1)?;
        }
        Ok(Some(out))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile_filter, m)?)?;
    m.add_function(wrap_pyfunction!(compile_sort, m)?)?;
    m.add_function(wrap_pyfunction!(compile_projection, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_spec, m)?)?;
    Ok(())
}

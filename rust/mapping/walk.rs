//! The walker both directions share: lazy paths, dict items as owned references, the
//! depth limit, and copy-on-write (or, for owned containers, in-place) rebuilding of
//! dicts and lists around a per-direction value rule.
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

use super::from_doc::from_doc_value;
use super::to_doc::{check_key, to_doc_value};
use crate::ffi::{dict_next, list_of};
use crate::keys::{child_path, index_path, key_text, stored_copy, too_deep_error, MAX_DEPTH};
use crate::types::Cache;

/// Iterates a dict's items as owned references (`PyDict_Next`, see `ffi::dict_next`).
pub(crate) struct Items<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    pos: pyo3::ffi::Py_ssize_t,
}

pub(crate) fn items<'a, 'py>(dict: &'a Bound<'py, PyDict>) -> Items<'a, 'py> {
    Items { dict, pos: 0 }
}

impl<'py> Iterator for Items<'_, 'py> {
    type Item = (Bound<'py, PyAny>, Bound<'py, PyAny>);

    fn next(&mut self) -> Option<Self::Item> {
        dict_next(self.dict, &mut self.pos)
    }
}

/// Exact str, float, bool or None: stored and read as they are, and looking at them runs
/// no Python code.
pub(crate) fn plain(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyString>()
        || value.is_none()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
}

#[derive(Clone, Copy)]
pub(crate) enum Seg<'a, 'py> {
    Root,
    Key(&'a str),
    Obj(&'a Bound<'py, PyAny>),
    Index(usize),
}

#[derive(Clone, Copy)]
pub(crate) struct Path<'a, 'py> {
    parent: Option<&'a Path<'a, 'py>>,
    seg: Seg<'a, 'py>,
}

impl<'a, 'py> Path<'a, 'py> {
    pub(crate) const ROOT: Path<'static, 'static> = Path { parent: None, seg: Seg::Root };

    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Key(key) }
    }

    pub(crate) fn obj(&'a self, key: &'a Bound<'py, PyAny>) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Obj(key) }
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Index(index) }
    }

    pub(crate) fn render(&self) -> String {
        let parent = self.parent.map(|p| p.render()).unwrap_or_default();
        match self.seg {
            Seg::Root => parent,
            Seg::Key(k) => child_path(&parent, k),
            Seg::Obj(k) => child_path(&parent, &key_text(k)),
            Seg::Index(i) => index_path(&parent, i),
        }
    }
}

pub(crate) fn too_deep(py: Python<'_>, path: &Path<'_, '_>) -> PyErr {
    too_deep_error(py, &path.render())
}

// Every conversion returns `None` when the value is kept as it is, so containers whose
// children are all kept are not copied (copy on write; the input is never modified).
pub(crate) type Mapped<'py> = PyResult<Option<Bound<'py, PyAny>>>;

/// Whether a container handed down as `owned` (only its parent, itself ours, refers to
/// it: the caller's promise for the top level) may be changed in place: only when
/// nothing else refers to it, its parent's reference and the walk's own being the only
/// two. A container pydantic's serializer shares with the model, or that appears twice,
/// has more and is copied instead, so a model's own state is never changed.
pub(crate) fn ours(container: &Bound<'_, PyAny>, owned: bool) -> bool {
    owned && container.get_refcnt() <= 2
}

/// A list: copied on the first changed item, or changed in place when it is ours (see
/// [`ours`]); exact tuples, sets and frozensets are copied into a new list at once (one C
/// call) which is then ours to change; other sequences become a new list item by item.
pub(crate) fn map_seq<'py>(
    py: Python<'py>,
    c: &Cache,
    items: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
    dir: Direction,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    if let Ok(list) = items.downcast_exact::<PyList>() {
        return map_list(py, c, list, path, depth, ours(list, owned), dir);
    }
    if items.is_exact_instance_of::<PyTuple>()
        || items.is_exact_instance_of::<PySet>()
        || items.is_exact_instance_of::<PyFrozenSet>()
    {
        let list = list_of(items)?;
        return Ok(Some(map_list(py, c, &list, path, depth, true, dir)?.unwrap_or_else(|| list.into_any())));
    }
    let mut out = Vec::with_capacity(items.len().unwrap_or(0));
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let new = dir.rule()(py, c, &item, &path.index(i), depth + 1, owned)?;
        out.push(new.unwrap_or(item));
    }
    Ok(Some(PyList::new(py, out)?.into_any()))
}

/// The items of an exact list mapped: changed in place when `in_place`, else copied on
/// the first changed item (the copy is returned, None when nothing changed).
fn map_list<'py>(
    py: Python<'py>,
    c: &Cache,
    list: &Bound<'py, PyList>,
    path: &Path<'_, 'py>,
    depth: usize,
    in_place: bool,
    dir: Direction,
) -> Mapped<'py> {
    let mut out: Option<Bound<'py, PyList>> = None;
    // the length is read again each time: Python code run for an item may change it
    let mut i = 0;
    while i < list.len() {
        let item = list.get_item(i)?;
        i += 1;
        if plain(&item) {
            continue;
        }
        let i = i - 1;
        if let Some(new) = dir.rule()(py, c, &item, &path.index(i), depth + 1, in_place)? {
            let target = match &out {
                Some(o) => o,
                None if in_place => list,
                None => out.insert(list.get_slice(0, list.len())),
            };
            target.set_item(i, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
}

pub(crate) type ValueRule =
    for<'a, 'py> fn(Python<'py>, &Cache, &Bound<'py, PyAny>, &Path<'a, 'py>, usize, bool) -> Mapped<'py>;

/// Which way a walk goes: documents being written have their keys checked and may be
/// changed in place when owned; documents read back are the caller's and only copied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToDoc,
    FromDoc,
}

impl Direction {
    fn rule(self) -> ValueRule {
        match self {
            Direction::ToDoc => to_doc_value,
            Direction::FromDoc => from_doc_value,
        }
    }
}

/// A dict: copied on the first changed value (changed in place when it is ours, see
/// [`ours`]: only values of existing keys are replaced, which iteration allows), always
/// copied to a plain dict when `value` is a dict subclass. Written documents have every
/// key checked; exact ints need no look when reading (they were checked when written).
pub(crate) fn map_dict<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyDict>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
    dir: Direction,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let writing = dir == Direction::ToDoc;
    let owned = writing && ours(value, owned);
    let mut out: Option<Bound<'py, PyDict>> =
        if value.is_exact_instance_of::<PyDict>() { None } else { Some(stored_copy(value)?) };
    for (key, child) in items(value) {
        if writing {
            check_key(py, &key, path)?;
        }
        if plain(&child) || (!writing && child.is_exact_instance_of::<PyInt>()) {
            continue;
        }
        if let Some(new) = dir.rule()(py, c, &child, &path.obj(&key), depth + 1, owned)? {
            let target = match &out {
                Some(o) => o,
                None if owned => value,
                None => out.insert(value.copy()?),
            };
            target.set_item(&key, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
}

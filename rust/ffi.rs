//! Every `unsafe` block of the crate, each with the invariant it relies on written above
//! it. Callers get safe functions: nothing here hands out a borrowed pointer.
//!
//! On reference counts: the mapping pass changes a container in place only when its
//! reference count shows that nothing but its parent and the pass refer to it (see
//! `mapping::ours`). That is sound here because the module is built for the stable ABI
//! (abi3) of GIL builds: the GIL is held for the whole pass, so no other thread can take a
//! new reference between the count being read and the container being changed. A
//! free-threaded build (PEP 703) would break this (another thread may incref at any
//! time, and counts are split between owner and other threads); abi3 modules cannot be
//! loaded there, and a port would have to copy instead.
use std::cell::RefCell;
use std::ffi::c_void;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

/// A `__slots__` member of a class, read and written through its descriptor's own
/// functions: what `getattr` / `object.__setattr__` end up calling for it, without the
/// attribute lookup on the way (only used on exact instances of the class).
pub struct Slot {
    descr: PyObject,
    get: ffi::descrgetfunc,
    set: ffi::descrsetfunc,
}

impl Slot {
    /// The slot `name` of `cls`, if `cls` itself defines it as a member descriptor.
    pub fn of(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Option<Slot>> {
        let py = cls.py();
        let Ok(descr) = cls.getattr("__dict__")?.get_item(name) else {
            return Ok(None);
        };
        let member = py.import("types")?.getattr("MemberDescriptorType")?;
        if !descr.get_type().is(&member) {
            return Ok(None);
        }
        let descr_type = descr.get_type();
        let ty = descr_type.as_ptr().cast::<ffi::PyTypeObject>();
        // SAFETY: `ty` is a live type object (held by `descr_type`); PyType_GetSlot only
        // reads the documented tp_descr_get / tp_descr_set entries (valid on static types
        // since 3.10) and returns NULL when a slot is absent.
        let (get, set) =
            unsafe { (ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_get), ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_set)) };
        if get.is_null() || set.is_null() {
            return Ok(None);
        }
        // SAFETY: both pointers are non-null and come from the tp_descr_get / tp_descr_set
        // slots, whose C signatures are exactly descrgetfunc / descrsetfunc.
        let (get, set) = unsafe {
            (
                std::mem::transmute::<*mut c_void, ffi::descrgetfunc>(get),
                std::mem::transmute::<*mut c_void, ffi::descrsetfunc>(set),
            )
        };
        Ok(Some(Slot { descr: descr.unbind(), get, set }))
    }

    /// `obj.<slot>` (raises AttributeError when unset, as getattr would).
    pub fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        let ty = obj.get_type();
        // SAFETY: the descriptor, the instance and its type are live for the call (held by
        // `self`, `obj` and `ty`); the getter returns a new reference or NULL with an error
        // set, which from_owned_ptr_or_err turns into Err.
        unsafe { Bound::from_owned_ptr_or_err(py, (self.get)(self.descr.as_ptr(), obj.as_ptr(), ty.as_ptr())) }
    }

    /// `object.__setattr__(obj, <slot>, value)`.
    pub fn set(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        // SAFETY: descriptor, instance and value are live for the call; the member setter
        // takes its own reference to `value` and returns -1 with an error set on failure.
        let rc = unsafe { (self.set)(self.descr.as_ptr(), obj.as_ptr(), value.as_ptr()) };
        if rc < 0 {
            Err(PyErr::fetch(obj.py()))
        } else {
            Ok(())
        }
    }
}

/// A new, uninitialised instance of `cls` (`object.__new__(cls)`): only used for classes
/// whose every field is then set through their slots (checked once at import, see
/// `types.rs`).
pub fn bare_instance<'py>(py: Python<'py>, cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let args = PyTuple::empty(py);
    // SAFETY: `cls` is a live type object and `args` a live tuple for the call;
    // PyType_GenericNew returns a new reference or NULL with an error set.
    unsafe {
        let obj = ffi::PyType_GenericNew(cls.as_ptr().cast::<ffi::PyTypeObject>(), args.as_ptr(), std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

/// The low 64 bits of a Python int (Decimal128 keeps its BID words as ints).
pub fn u64_bits(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    // SAFETY: `value` is live for the call; PyLong_AsUnsignedLongLongMask accepts any
    // object and reports a failure as (unsigned long long)-1 with an error set.
    let bits = unsafe { ffi::PyLong_AsUnsignedLongLongMask(value.as_ptr()) };
    if bits == u64::MAX {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(bits)
}

/// The length of a str in code points (no Python code runs, no error is possible).
pub fn str_len(text: &Bound<'_, PyString>) -> usize {
    // SAFETY: `text` is a live str object (the type guarantees it), for which
    // PyUnicode_GetLength cannot fail; a negative result is mapped to 0 all the same.
    let len = unsafe { ffi::PyUnicode_GetLength(text.as_ptr()) };
    usize::try_from(len).unwrap_or(0)
}

/// The next `(key, value)` of `dict` from position `pos`, as owned references, or None at
/// the end. `PyDict_Next` stays within the table even if the dict changed meanwhile.
pub fn dict_next<'py>(
    dict: &Bound<'py, PyDict>,
    pos: &mut ffi::Py_ssize_t,
) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let py = dict.py();
    // SAFETY: `dict` is a live dict; PyDict_Next writes borrowed pointers to a live key and
    // value, which are turned into owned references at once, before any Python code can
    // run (and so before anything could remove them from the dict).
    unsafe {
        if ffi::PyDict_Next(dict.as_ptr(), pos, &mut key, &mut value) == 0 {
            return None;
        }
        Some((Bound::from_borrowed_ptr(py, key), Bound::from_borrowed_ptr(py, value)))
    }
}

/// `function(arg)` with an args tuple kept in `cell` between calls: `function` (a C
/// function that only borrows its arguments) leaves the tuple with its one reference, so
/// the next call can reuse it. The tuple is taken out of the cell for the call, so a call
/// made meanwhile (re-entrant) builds its own.
pub fn call_with_one_arg<'py>(
    cell: &RefCell<Option<Py<PyTuple>>>,
    function: &Bound<'py, PyAny>,
    arg: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = function.py();
    let reused = cell.borrow_mut().take();
    let args = match reused {
        Some(args) if args.get_refcnt(py) == 1 => args,
        _ => PyTuple::new(py, [py.None()])?.unbind(),
    };
    // SAFETY: `args` is a live 1-tuple that nothing but this function refers to (count 1,
    // checked above, or just made), so changing its item is invisible to any other code;
    // PyTuple_SetItem steals the reference to `arg` and releases the old item.
    if unsafe { ffi::PyTuple_SetItem(args.as_ptr(), 0, arg.into_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: live callable and args tuple for the call; PyObject_Call returns a new
    // reference or NULL with an error set.
    let result = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyObject_Call(function.as_ptr(), args.as_ptr(), std::ptr::null_mut()))
    };
    *cell.borrow_mut() = Some(args);
    result
}

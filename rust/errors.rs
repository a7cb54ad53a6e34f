//! Native errors are raised as the classes of `cqrs_ddd_persistence_mongo.exceptions`,
//! so callers see one hierarchy whichever backend is bound.
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyType;

static EXCEPTIONS: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

fn exception_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = EXCEPTIONS.get_or_try_init(py, || -> PyResult<Py<PyModule>> {
        Ok(py.import("cqrs_ddd_persistence_mongo.exceptions")?.unbind())
    })?;
    Ok(module.bind(py).getattr(name)?.downcast_into::<PyType>()?)
}

/// Build a `PyErr` of the library exception `name` with `message`.
pub fn library_error(py: Python<'_>, name: &str, message: String) -> PyErr {
    match exception_class(py, name) {
        Ok(cls) => match cls.call1((message,)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

pub fn invalid_document(py: Python<'_>, message: String) -> PyErr {
    library_error(py, "InvalidDocument", message)
}

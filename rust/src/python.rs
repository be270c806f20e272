//! PyO3 bindings: the `tct._tct` extension module.
//!
//! This is the only file that knows about Python (tiktoken's split): everything here converts
//! arguments, releases the GIL around the real work in the core, and maps the core's typed errors
//! onto the exception classes defined in `python/tct/__init__.py`. Input normalisation that is
//! easier in Python (reading schema files, `json.dumps` of Python values, registry forms) lives in
//! that wrapper; this module only ever sees bytes, ints and numpy arrays.
//!
//! The exception classes are defined in Python (so they have real constructors with keyword
//! attributes and pickle with their attributes) and looked up lazily here. The lookup can fail
//! only if the `tct` package itself is broken; it then surfaces as the import error instead of the
//! panic that `pyo3::import_exception!` would raise.

/// Rust's allocations go through mimalloc, not the C library's `malloc` (as in pydantic-core):
/// inside Python they otherwise share glibc's main arena with Python's own objects.
// Measured: encoding a corpus while keeping its lists of ids spent 10% of its time in
// `_int_malloc` (3% when the same work ran on a worker thread, whose arena Python does not use).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::bitmask::{bitmask_width, fill_bitmask_batch, GuidedMatcher};
use crate::error::{DecodeError, EncodeError, SchemaError};
use crate::tokenizer::{Encoding, Tokenizer};
use numpy::{Element, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyList, PyString, PyType};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The Python exception class `tct.<name>`, imported once.
fn exception_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    cell.import(py, "tct", name).cloned()
}

static TCT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static SCHEMA_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ENCODE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DECODE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `tct.TctError(message)`: errors of this layer that have no more specific class.
fn tct_error(py: Python<'_>, message: String) -> PyErr {
    match exception_type(py, &TCT_ERROR, "TctError") {
        Ok(ty) => PyErr::from_type(ty, (message,)),
        Err(e) => e,
    }
}

/// `tct.SchemaError(message, pointer)`. `source` (a file name or registry URI) prefixes the
/// message so the user knows which of several schemas is at fault.
fn schema_error(py: Python<'_>, e: SchemaError, source: Option<&str>) -> PyErr {
    let message = match source {
        Some(s) => format!("{s}: {e}"),
        None => e.to_string(),
    };
    match exception_type(py, &SCHEMA_ERROR, "SchemaError") {
        Ok(ty) => PyErr::from_type(ty, (message, e.pointer)),
        Err(err) => err,
    }
}

/// `tct.EncodeError(message, pointer, offset, index)`; `index` is the document's position in a
/// batch (`None` for a single document).
fn encode_error(py: Python<'_>, e: EncodeError, index: Option<usize>) -> PyErr {
    let message = match index {
        Some(i) => format!("document {i}: {e}"),
        None => e.to_string(),
    };
    match exception_type(py, &ENCODE_ERROR, "EncodeError") {
        Ok(ty) => PyErr::from_type(ty, (message, e.pointer, e.offset, index)),
        Err(err) => err,
    }
}

/// `tct.DecodeError(message, position)`.
fn decode_error(py: Python<'_>, e: DecodeError) -> PyErr {
    match exception_type(py, &DECODE_ERROR, "DecodeError") {
        Ok(ty) => PyErr::from_type(ty, (e.to_string(), e.position)),
        Err(err) => err,
    }
}

// ---------------------------------------------------------------------------------------------
// Id conversion
// ---------------------------------------------------------------------------------------------

/// Check one id from Python against the vocabulary. Out-of-range ids are a `DecodeError` at
/// their position (not an `OverflowError`): to the caller they are just a bad token sequence.
fn checked_id(py: Python<'_>, value: i128, position: usize, vocab_size: u32) -> PyResult<u32> {
    if value < 0 || value >= i128::from(vocab_size) {
        return Err(decode_error(
            py,
            DecodeError::new(
                position,
                format!("id {value} is outside the vocabulary (0..{vocab_size})"),
            ),
        ));
    }
    // In range of a u32 vocabulary, so the cast is exact.
    Ok(value as u32)
}

/// One-dimensional numpy array of integer dtype `T`, if `obj` is one.
fn ids_from_array<T>(obj: &Bound<'_, PyAny>, vocab_size: u32) -> Option<PyResult<Vec<u32>>>
where
    T: Element + Copy + Into<i128>,
{
    let array = obj.extract::<PyReadonlyArray1<'_, T>>().ok()?;
    let py = obj.py();
    let view = array.as_array();
    let mut ids = Vec::with_capacity(view.len());
    for (position, &v) in view.iter().enumerate() {
        match checked_id(py, v.into(), position, vocab_size) {
            Ok(id) => ids.push(id),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(ids))
}

/// Python's `bool` or numpy's `bool_`: both convert to 0/1 as ints, but a mask or a flag passed
/// where ids belong is a mistake, not a token sequence.
fn is_bool(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyBool>()
        || obj
            .get_type()
            .name()
            .is_ok_and(|n| n.to_str().is_ok_and(|n| n == "bool" || n == "bool_"))
}

/// A numpy array of dtype bool (`array.dtype.kind == "b"`).
fn is_bool_array(obj: &Bound<'_, PyAny>) -> bool {
    obj.getattr("dtype")
        .and_then(|d| d.getattr("kind"))
        .and_then(|k| k.extract::<String>())
        .is_ok_and(|k| k == "b")
}

/// Convert any sequence of Python ints (a list, a tuple, a numpy integer array, a generator) into
/// ids, checking every id against the vocabulary.
fn ids_from_py(obj: &Bound<'_, PyAny>, vocab_size: u32) -> PyResult<Vec<u32>> {
    let py = obj.py();
    // Iterating a str or bytes "works" in Python but is never what the caller meant.
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "ids must be a sequence of ints (a list or a numpy array), not str or bytes",
        ));
    }
    // Lists (what `encode` returns) by index, without the iterator protocol (the list
    // iterator asks the list for its length before every item).
    if let Ok(list) = obj.cast::<PyList>() {
        let n = list.len();
        let mut ids = Vec::with_capacity(n);
        for position in 0..n {
            let item = list.get_item(position)?;
            ids.push(list_item_id(py, &item, position, vocab_size)?);
        }
        return Ok(ids);
    }
    if is_bool_array(obj) {
        return Err(PyTypeError::new_err(
            "ids must be ints, not a bool array (a mask is not a token sequence)",
        ));
    }
    // numpy fast paths: read the buffer directly instead of boxing every element.
    macro_rules! try_dtype {
        ($($t:ty),*) => {$(
            if let Some(result) = ids_from_array::<$t>(obj, vocab_size) {
                return result;
            }
        )*};
    }
    try_dtype!(u16, i64, u32, i32, u64, u8, i16, i8);

    let mut ids = Vec::with_capacity(obj.len().unwrap_or(0));
    for (position, item) in obj.try_iter()?.enumerate() {
        ids.push(list_item_id(py, &item?, position, vocab_size)?);
    }
    Ok(ids)
}

/// `ids[position]` as an id: a `DecodeError` outside the vocabulary, a `TypeError` if not an int.
fn list_item_id(
    py: Python<'_>,
    item: &Bound<'_, PyAny>,
    position: usize,
    vocab_size: u32,
) -> PyResult<u32> {
    if is_bool(item) {
        return Err(PyTypeError::new_err(format!(
            "ids[{position}] must be an int, not a bool"
        )));
    }
    match item.extract::<i64>() {
        Ok(v) => checked_id(py, i128::from(v), position, vocab_size),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => Err(decode_error(
            py,
            DecodeError::new(
                position,
                format!(
                    "id {} is outside the vocabulary (0..{vocab_size})",
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                ),
            ),
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "ids[{position}] must be an int, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))),
    }
}

/// Python ints for every uint16 id, made once per process (65,536 ints, about 2 MB).
static ID_INTS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// `ids` as a Python list. Python caches only the ints below 257, so a list of ids used to
/// allocate one int object per id; taking them from `ID_INTS` costs a reference count each.
// Measured: `tok.encode` over 3,014 corpus documents (trained tokenizer, `--profile fast`,
// best of 5 in process CPU time, box busy with a CI run) 0.308 s -> 0.272 s.
fn ids_to_list<'py>(py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
    let int = |i: u32| -> Bound<'py, PyAny> {
        match i.into_pyobject(py) {
            Ok(x) => x.into_any(),
            Err(never) => match never {},
        }
    };
    let ints = ID_INTS.get_or_init(py, || {
        (0..=u32::from(u16::MAX)).map(|i| int(i).unbind()).collect()
    });
    PyList::new(
        py,
        ids.iter().map(|&i| match ints.get(i as usize) {
            Some(x) => x.bind(py).clone(),
            None => int(i),
        }),
    )
}

/// A single Python int as an id (for `Matcher.advance`). `position` is where it would go.
fn id_from_py(obj: &Bound<'_, PyAny>, position: usize, vocab_size: u32) -> PyResult<u32> {
    let py = obj.py();
    if is_bool(obj) {
        return Err(PyTypeError::new_err("an id must be an int, not a bool"));
    }
    match obj.extract::<i64>() {
        Ok(v) => checked_id(py, i128::from(v), position, vocab_size),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => Err(decode_error(
            py,
            DecodeError::new(
                position,
                format!("id is outside the vocabulary (0..{vocab_size})"),
            ),
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "an id must be an int, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Classes
// ---------------------------------------------------------------------------------------------

/// The result of `Tokenizer.encode_detailed`: the ids and the JSON pointers where the document
/// did not conform to the schema and the generic path was used.
#[pyclass(module = "tct", name = "Encoding", frozen, eq)]
#[derive(PartialEq)]
struct PyEncoding {
    #[pyo3(get)]
    ids: Vec<u32>,
    #[pyo3(get)]
    fallbacks: Vec<String>,
}

#[pymethods]
impl PyEncoding {
    #[new]
    fn new(ids: Vec<u32>, fallbacks: Vec<String>) -> Self {
        PyEncoding { ids, fallbacks }
    }

    fn __repr__(&self) -> String {
        format!(
            "Encoding(ids=<{} ids>, fallbacks={:?})",
            self.ids.len(),
            self.fallbacks
        )
    }

    fn __len__(&self) -> usize {
        self.ids.len()
    }

    // Plain data: pickles as its constructor call, so DataLoader workers can return it.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let this = slf.get();
        Ok((slf.get_type(), (this.ids.clone(), this.fallbacks.clone())))
    }
}

/// `Encoding.__reduce__`'s result: the class and its constructor arguments.
type Reduced<'py> = (Bound<'py, PyType>, (Vec<u32>, Vec<String>));

/// `encode_batch`'s result: uint16 ids back to back and int64 offsets.
type IdsAndOffsets<'py> = (Bound<'py, PyArray1<u16>>, Bound<'py, PyArray1<i64>>);

impl From<Encoding> for PyEncoding {
    fn from(e: Encoding) -> Self {
        PyEncoding {
            ids: e.ids,
            fallbacks: e.fallbacks,
        }
    }
}

/// Constrained-generation state (see `Matcher` in the core). Not frozen: `advance` mutates it.
/// `document` releases the GIL while it holds the state, so a second thread can reach the
/// matcher meanwhile: every method borrows it explicitly and turns a conflict into
/// `tct.MatcherBusyError` (PyO3's own would be `RuntimeError: Already borrowed`).
#[pyclass(module = "tct", name = "Matcher")]
struct PyMatcher {
    inner: GuidedMatcher,
    vocab_size: u32,
    /// Ids accepted so far: the position reported when the next id is rejected here.
    steps: usize,
}

static MATCHER_BUSY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `tct.MatcherBusyError`: the matcher is in use by a call on another thread.
fn matcher_busy(py: Python<'_>) -> PyErr {
    match exception_type(py, &MATCHER_BUSY_ERROR, "MatcherBusyError") {
        Ok(ty) => PyErr::from_type(
            ty,
            (
                "this Matcher is in use by another thread (a matcher is not shareable: give each \
              thread its own matcher.copy(), or guard it with a lock)"
                    .to_string(),
            ),
        ),
        Err(e) => e,
    }
}

type MatcherRef<'py> = PyRef<'py, PyMatcher>;
type MatcherMut<'py> = PyRefMut<'py, PyMatcher>;

fn read<'py>(slf: &Bound<'py, PyMatcher>) -> PyResult<MatcherRef<'py>> {
    slf.try_borrow().map_err(|_| matcher_busy(slf.py()))
}

fn write<'py>(slf: &Bound<'py, PyMatcher>) -> PyResult<MatcherMut<'py>> {
    slf.try_borrow_mut().map_err(|_| matcher_busy(slf.py()))
}

#[pymethods]
impl PyMatcher {
    /// Feed one id. Raises `DecodeError` (and leaves the state unchanged) if it is not allowed.
    fn advance(slf: &Bound<'_, Self>, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let mut this = write(slf)?;
        let id = id_from_py(id, this.steps, this.vocab_size)?;
        this.inner.advance(id).map_err(|e| decode_error(py, e))?;
        this.steps += 1;
        Ok(())
    }

    /// Boolean mask of length `vocab_size`: `True` for every id that keeps the sequence valid.
    /// A fresh array, written in place (no intermediate buffer: the mask is most of a step's
    /// cost inside strings).
    fn allowed<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let mut this = write(slf)?;
        let arr = PyArray1::<bool>::zeros(slf.py(), this.vocab_size as usize, false);
        {
            let mut view = arr.readwrite();
            // A fresh C-contiguous array: `as_slice_mut` cannot fail.
            if let Ok(mask) = view.as_slice_mut() {
                this.inner.fill_allowed(mask);
            }
        }
        Ok(arr)
    }

    /// Write the mask into `out` (a writable, contiguous bool array of length `vocab_size`),
    /// for sampling loops that reuse one buffer.
    fn allowed_into(slf: &Bound<'_, Self>, out: &Bound<'_, PyArray1<bool>>) -> PyResult<()> {
        let mut this = write(slf)?;
        let mut view = out
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("out is not writable: {e}")))?;
        let mask = view
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out must be a contiguous array"))?;
        if mask.len() != this.vocab_size as usize {
            return Err(PyValueError::new_err(format!(
                "out has length {}, the vocabulary {}",
                mask.len(),
                this.vocab_size
            )));
        }
        this.inner.fill_allowed(mask);
        Ok(())
    }

    fn is_complete(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(read(slf)?.inner.is_complete())
    }

    /// Masks where the rules would have left no id and the schema's mask was kept.
    #[getter]
    fn rules_fallbacks(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(read(slf)?.inner.matcher().rules_fallbacks())
    }

    /// What the matcher waits for next (`"object"`, `"string"`, ...): for profiling.
    fn top_kind(slf: &Bound<'_, Self>) -> PyResult<&'static str> {
        Ok(read(slf)?.inner.matcher().top_kind())
    }

    /// The valid document nearest the current prefix, as compact JSON.
    #[pyo3(signature = (complete = true))]
    fn document(slf: &Bound<'_, Self>, complete: bool) -> PyResult<String> {
        let py = slf.py();
        let this = read(slf)?;
        let inner = this.inner.matcher();
        py.detach(|| inner.document(complete))
            .map_err(|e| decode_error(py, e))
    }

    /// Number of ids accepted so far.
    #[getter]
    fn position(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(read(slf)?.steps)
    }

    /// An independent copy (for beam search or backtracking).
    fn copy(slf: &Bound<'_, Self>) -> PyResult<Self> {
        let this = read(slf)?;
        Ok(PyMatcher {
            inner: this.inner.clone(),
            vocab_size: this.vocab_size,
            steps: this.steps,
        })
    }

    fn __copy__(slf: &Bound<'_, Self>) -> PyResult<Self> {
        Self::copy(slf)
    }

    fn __deepcopy__(slf: &Bound<'_, Self>, _memo: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::copy(slf)
    }

    // ---- the token-bitmask interface (llguidance / XGrammar names; see `crate::bitmask`) ----

    /// Accept one id; `False` (state unchanged) when the schema or the budget forbids it, or it
    /// is not an id of the vocabulary.
    fn accept_token(slf: &Bound<'_, Self>, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        if id.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err("an id must be an int, not bool"));
        }
        let Ok(v) = id.extract::<i64>() else {
            if id.extract::<i128>().is_ok() {
                return Ok(false); // an int too large for any vocabulary
            }
            return Err(PyTypeError::new_err("an id must be an int"));
        };
        let Ok(v) = u32::try_from(v) else {
            return Ok(false);
        };
        let mut this = write(slf)?;
        if v >= this.vocab_size {
            return Ok(false);
        }
        let inner = &mut this.inner;
        let ok = py.detach(|| inner.accept_token(v));
        if ok {
            this.steps = this.inner.accepted().len();
        }
        Ok(ok)
    }

    /// Write the mask of the next id into row `index` of `bitmask` (int32, shape (batch, W) with
    /// W >= ceil(vocab_size / 32), C-contiguous, writable). The GIL is released meanwhile.
    #[pyo3(signature = (bitmask, index = 0))]
    fn fill_next_token_bitmask(
        slf: &Bound<'_, Self>,
        bitmask: &Bound<'_, PyAny>,
        index: usize,
    ) -> PyResult<()> {
        let py = slf.py();
        let mut this = write(slf)?;
        let bitmask = &bitmask_array(bitmask)?;
        let (rows, width) = bitmask_shape(bitmask, this.vocab_size)?;
        if index >= rows {
            return Err(PyValueError::new_err(format!(
                "index {index} is outside the bitmask's {rows} rows"
            )));
        }
        let inner = &mut this.inner;
        with_words(bitmask, |all| {
            let row = &mut all[index * width..(index + 1) * width];
            py.detach(|| inner.fill_bitmask(row))
        })
    }

    /// Undo the last `n` accepted ids (the budget too).
    fn rollback(slf: &Bound<'_, Self>, n: usize) -> PyResult<()> {
        let py = slf.py();
        let mut this = write(slf)?;
        let inner = &mut this.inner;
        py.detach(|| inner.rollback(n))
            .map_err(|e| decode_error(py, e))?;
        this.steps = this.inner.accepted().len();
        Ok(())
    }

    /// An independent copy (speculative branches, beams).
    fn fork(slf: &Bound<'_, Self>) -> PyResult<Self> {
        Self::copy(slf)
    }

    /// Back to the start (the budget as set at the start, if it was).
    fn reset(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut this = write(slf)?;
        this.inner.reset();
        this.steps = 0;
        Ok(())
    }

    /// True once EOS was accepted.
    fn is_terminated(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(read(slf)?.inner.is_terminated())
    }

    /// The ids that are the only choice from here, in order (jump-forward), at most `limit`.
    #[pyo3(signature = (limit = 4096))]
    fn forced_ids(slf: &Bound<'_, Self>, limit: usize) -> PyResult<Vec<u32>> {
        let py = slf.py();
        let this = read(slf)?;
        let inner = &this.inner;
        Ok(py.detach(|| inner.forced_ids(limit)))
    }

    /// At most `n` more ids, EOS included (None: no bound); ids after which the smallest valid
    /// completion no longer fits are forbidden. Raises `DecodeError` if even that does not fit.
    #[pyo3(signature = (n))]
    fn set_budget(slf: &Bound<'_, Self>, n: Option<usize>) -> PyResult<()> {
        let py = slf.py();
        write(slf)?
            .inner
            .set_budget(n)
            .map_err(|e| decode_error(py, e))
    }

    /// The document so far as JSON, open strings and containers closed, unfinished keys and
    /// values left out: each snapshot extends the previous one (for streaming).
    fn partial_document(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = read(slf)?;
        let inner = &this.inner;
        py.detach(|| inner.partial_document())
            .map_err(|e| decode_error(py, e))
    }

    /// Ids left in the budget (EOS included), or None.
    #[getter]
    fn budget(slf: &Bound<'_, Self>) -> PyResult<Option<usize>> {
        Ok(read(slf)?.inner.budget())
    }

    /// Steps at which the budget forbade ids the schema allowed (since creation or a copy).
    #[getter]
    fn budget_cuts(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(read(slf)?.inner.budget_cuts)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = read(slf)?;
        Ok(format!(
            "Matcher(position={}, complete={})",
            this.steps,
            this.inner.is_complete()
        ))
    }
}

/// A bitmask as a numpy int32 2-D array: numpy arrays as they are, CPU torch tensors through
/// `.numpy()` (a view of the same memory). A CUDA bitmask is refused: the masks are filled on
/// the CPU, as in XGrammar and llguidance, then copied (`bitmask.to(device)`).
fn bitmask_array<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<i32>>> {
    if let Ok(a) = obj.cast::<PyArray2<i32>>() {
        return Ok(a.clone());
    }
    if obj.hasattr("is_cuda")? && obj.getattr("is_cuda")?.is_truthy()? {
        return Err(PyValueError::new_err(
            "the bitmask is on a CUDA device: fill a CPU bitmask (tct.allocate_token_bitmask), \
             then move it with .to(device)",
        ));
    }
    if obj.hasattr("numpy")? {
        if let Ok(a) = obj.call_method0("numpy")?.cast_into::<PyArray2<i32>>() {
            return Ok(a);
        }
    }
    Err(PyTypeError::new_err(
        "bitmask must be a 2-D int32 numpy array or CPU torch tensor (tct.allocate_token_bitmask)",
    ))
}

/// (rows, words per row) of a bitmask for `vocab_size` ids, or a `ValueError` saying what is
/// wrong with its shape.
fn bitmask_shape(bitmask: &Bound<'_, PyArray2<i32>>, vocab_size: u32) -> PyResult<(usize, usize)> {
    let shape = bitmask.shape();
    let (rows, width) = (shape[0], shape[1]);
    let need = bitmask_width(vocab_size as usize);
    if width < need {
        return Err(PyValueError::new_err(format!(
            "bitmask rows have {width} words; the vocabulary of {vocab_size} ids needs {need}"
        )));
    }
    Ok((rows, width))
}

/// Run `f` on the words of `bitmask`, which must be writable and C-contiguous.
fn with_words<R>(
    bitmask: &Bound<'_, PyArray2<i32>>,
    f: impl FnOnce(&mut [i32]) -> R,
) -> PyResult<R> {
    let mut view = bitmask
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("bitmask is not writable: {e}")))?;
    let all = view
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("bitmask must be C-contiguous"))?;
    Ok(f(all))
}

/// Fill row i of `bitmask` for `matchers[i]`, in parallel with the GIL released.
#[pyfunction]
#[pyo3(signature = (matchers, bitmask, num_threads = None))]
fn fill_next_token_bitmask_batch<'py>(
    py: Python<'py>,
    matchers: Vec<Bound<'py, PyMatcher>>,
    bitmask: &Bound<'py, PyAny>,
    num_threads: Option<usize>,
) -> PyResult<()> {
    // Borrowed one by one (not extracted as `PyRefMut`s), so that a matcher in use elsewhere is
    // a `MatcherBusyError` and one listed twice a clear `ValueError`, not PyO3's RuntimeError.
    let mut borrowed: Vec<MatcherMut<'py>> = Vec::with_capacity(matchers.len());
    for (i, m) in matchers.iter().enumerate() {
        match m.try_borrow_mut() {
            Ok(b) => borrowed.push(b),
            Err(_) if matchers[..i].iter().any(|earlier| earlier.is(m)) => {
                return Err(PyValueError::new_err(format!(
                    "matchers[{i}] is the same Matcher as an earlier entry: each row needs its \
                     own matcher (matcher.fork())"
                )))
            }
            Err(_) => return Err(matcher_busy(py)),
        }
    }
    let matchers = borrowed;
    let bitmask = &bitmask_array(bitmask)?;
    let Some(first) = matchers.first() else {
        return Ok(());
    };
    let vocab = first.vocab_size;
    if let Some(m) = matchers.iter().find(|m| m.vocab_size != vocab) {
        return Err(PyValueError::new_err(format!(
            "matchers of different vocabularies ({vocab} and {} ids)",
            m.vocab_size
        )));
    }
    let (rows, width) = bitmask_shape(bitmask, vocab)?;
    if matchers.len() > rows {
        return Err(PyValueError::new_err(format!(
            "{} matchers, but the bitmask has {rows} rows",
            matchers.len()
        )));
    }
    if num_threads == Some(0) {
        return Err(PyValueError::new_err(
            "num_threads must be at least 1 (or None)",
        ));
    }
    let n = matchers.len();
    let mut matchers = matchers;
    let mut inners: Vec<&mut GuidedMatcher> = matchers.iter_mut().map(|m| &mut m.inner).collect();
    with_words(bitmask, |all| {
        let all = &mut all[..n * width];
        py.detach(|| fill_bitmask_batch(&mut inners, all, width, num_threads))
    })
}

/// A rules overlay compiled and prepared for one tokenizer's matchers.
#[pyclass(module = "tct._tct", name = "Rules", frozen)]
struct PyRules {
    enforced: Arc<tct_rules::layer::Enforced>,
}

use crate::rules as tct_rules;
use std::sync::Arc;

#[pymethods]
impl PyRules {
    /// Compile `overlay` (JSON bytes) for `tokenizer`. A bad overlay raises `SchemaError` with
    /// a JSON pointer into the overlay.
    #[new]
    fn new(py: Python<'_>, tokenizer: &PyTokenizer, overlay: &[u8]) -> PyResult<Self> {
        let tok = &tokenizer.inner;
        let enforced = py
            .detach(|| -> Result<_, SchemaError> {
                let v = crate::compile::parse_schema_text(overlay, "the rules overlay")?;
                let rules = tct_rules::Rules::from_overlay(&v)?;
                Ok(tok.enforce(Arc::new(rules)))
            })
            .map_err(|e| schema_error(py, e, Some("the rules overlay")))?;
        Ok(PyRules { enforced })
    }

    /// What is enforced (one line per rule), then what is not enforced exactly.
    #[getter]
    fn report(&self) -> Vec<String> {
        self.enforced.rules.report()
    }
}

/// A compiled schema plus its vocabulary. The public `tct.Tokenizer` wraps this class and adds
/// input normalisation; this one takes bytes only.
#[pyclass(module = "tct._tct", name = "Tokenizer", frozen)]
struct PyTokenizer {
    inner: Tokenizer,
}

#[pymethods]
impl PyTokenizer {
    /// Compile `schema` (JSON bytes). `registry` is a list of `(uri, schema JSON bytes)` that
    /// remote `$ref`s may resolve against. `source` names the schema in error messages.
    /// Parsing and compilation run with the GIL released.
    #[staticmethod]
    #[pyo3(signature = (schema, registry, source = None))]
    fn compile(
        py: Python<'_>,
        schema: &[u8],
        registry: Vec<(String, Bound<'_, PyBytes>)>,
        source: Option<String>,
    ) -> PyResult<Self> {
        let registry: Vec<(String, &[u8])> = registry
            .iter()
            .map(|(uri, b)| (uri.clone(), b.as_bytes()))
            .collect();
        // Which input failed: the schema itself (None) or registry entry i.
        let result = py.detach(|| -> Result<Tokenizer, (Option<usize>, SchemaError)> {
            let schema =
                crate::compile::parse_schema_text(schema, "the schema").map_err(|e| (None, e))?;
            let mut parsed = Vec::with_capacity(registry.len());
            for (i, (uri, bytes)) in registry.iter().enumerate() {
                let value = crate::compile::parse_schema_text(bytes, "the registered schema")
                    .map_err(|e| (Some(i), e))?;
                parsed.push((uri.clone(), value));
            }
            Tokenizer::from_schema(&schema, &parsed).map_err(|e| (None, e))
        });
        match result {
            Ok(inner) => {
                check_vocab_fits_u16(py, &inner)?;
                Ok(PyTokenizer { inner })
            }
            Err((Some(i), e)) => Err(schema_error(
                py,
                e,
                Some(&format!("registry entry {}", registry[i].0)),
            )),
            Err((None, e)) => Err(schema_error(py, e, source.as_deref())),
        }
    }

    /// Restore a tokenizer from `to_bytes()` output (pickles, tokenizer files). `source` names
    /// the file in error messages.
    #[staticmethod]
    #[pyo3(signature = (data, source = None))]
    fn from_bytes(py: Python<'_>, data: &[u8], source: Option<String>) -> PyResult<Self> {
        let inner = py.detach(|| Tokenizer::from_bytes(data)).map_err(|e| {
            schema_error(py, e, Some(source.as_deref().unwrap_or("tokenizer bytes")))
        })?;
        check_vocab_fits_u16(py, &inner)?;
        Ok(PyTokenizer { inner })
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let inner = &self.inner;
        let bytes = py.detach(|| inner.to_bytes());
        PyBytes::new(py, &bytes)
    }

    /// Write the tokenizer file to `path` atomically (temporary file, fsync, rename).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let inner = &self.inner;
        py.detach(|| inner.save(&path)).map_err(|e| {
            let msg = e.to_string();
            let name = path.display().to_string();
            match e.raw_os_error() {
                // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, ...).
                Some(errno) => PyOSError::new_err((errno, msg, name)),
                None => PyOSError::new_err(format!("{name}: {msg}")),
            }
        })
    }

    /// Encode one JSON document (UTF-8 bytes) to ids.
    fn encode<'py>(&self, py: Python<'py>, doc: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let ids = self.encode_detailed_inner(py, doc)?.ids;
        ids_to_list(py, &ids)
    }

    fn encode_detailed(&self, py: Python<'_>, doc: &[u8]) -> PyResult<PyEncoding> {
        self.encode_detailed_inner(py, doc).map(PyEncoding::from)
    }

    /// Encode many JSON documents (UTF-8 bytes) in parallel with the GIL released. Returns the
    /// concatenated ids as uint16 and int64 offsets of length `len(docs) + 1`.
    #[pyo3(signature = (docs, num_threads = None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        docs: Vec<Bound<'py, PyBytes>>,
        num_threads: Option<usize>,
    ) -> PyResult<IdsAndOffsets<'py>> {
        if num_threads == Some(0) {
            return Err(PyValueError::new_err(
                "num_threads must be at least 1 (or None)",
            ));
        }
        let slices: Vec<&[u8]> = docs.iter().map(|d| d.as_bytes()).collect();
        let inner = &self.inner;
        let result = py.detach(|| -> Result<(Vec<u16>, Vec<i64>), BatchError> {
            let encodings = inner.encode_batch_json(&slices, num_threads);
            // Report the first bad document by index; the others are not looked at.
            let mut total = 0usize;
            for (i, e) in encodings.iter().enumerate() {
                match e {
                    Ok(enc) => total += enc.ids.len(),
                    Err(err) => return Err(BatchError::Encode(i, err.clone())),
                }
            }
            let mut ids = Vec::with_capacity(total);
            let mut offsets = Vec::with_capacity(encodings.len() + 1);
            offsets.push(0i64);
            for (i, e) in encodings.into_iter().enumerate() {
                let enc = e.map_err(|err| BatchError::Encode(i, err))?;
                for id in enc.ids {
                    ids.push(u16::try_from(id).map_err(|_| BatchError::IdTooLarge(i, id))?);
                }
                // A Vec never holds more than isize::MAX elements, so this fits an i64.
                offsets.push(ids.len() as i64);
            }
            Ok((ids, offsets))
        });
        match result {
            Ok((ids, offsets)) => {
                Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, offsets)))
            }
            Err(BatchError::Encode(i, e)) => Err(encode_error(py, e, Some(i))),
            Err(BatchError::IdTooLarge(i, id)) => Err(tct_error(
                py,
                format!("document {i}: id {id} does not fit uint16 (internal error)"),
            )),
        }
    }

    /// Decode the first complete document in `ids`: `(json_text, consumed, total)`.
    fn decode(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<(String, usize, usize)> {
        let ids = ids_from_py(ids, self.inner.vocab_size())?;
        let inner = &self.inner;
        let decoded = py
            .detach(|| inner.decode(&ids))
            .map_err(|e| decode_error(py, e))?;
        Ok((decoded.json, decoded.consumed, decoded.total))
    }

    /// Train a vocabulary for `schema` on `docs` (JSON bytes each), in Rust, in parallel, with
    /// the GIL released. `merge_scope` is "strings", "structure-runs" or "across".
    #[staticmethod]
    #[pyo3(signature = (schema, registry, docs, vocab_size, dictionary_size=None, merge_scope=None, name=String::from("tokenizer"), progress=false, num_threads=None, groups=None))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        py: Python<'_>,
        schema: &[u8],
        registry: Vec<(String, Bound<'_, PyBytes>)>,
        docs: Vec<Bound<'_, PyBytes>>,
        vocab_size: u32,
        dictionary_size: Option<u32>,
        merge_scope: Option<String>,
        name: String,
        progress: bool,
        num_threads: Option<usize>,
        groups: Option<Vec<u32>>,
    ) -> PyResult<Self> {
        let scope = match merge_scope.as_deref() {
            None => None,
            Some("strings") => Some(crate::vocab::MergeScope::Strings),
            Some("structure-runs") => Some(crate::vocab::MergeScope::StructureRuns),
            Some("across") => Some(crate::vocab::MergeScope::Across),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "merge_scope must be 'strings', 'structure-runs' or 'across', not {other:?}"
                )))
            }
        };
        let registry: Vec<(String, &[u8])> = registry
            .iter()
            .map(|(uri, b)| (uri.clone(), b.as_bytes()))
            .collect();
        let slices: Vec<&[u8]> = docs.iter().map(|d| d.as_bytes()).collect();
        let opts = crate::TrainOptions {
            vocab_size,
            dictionary_size,
            scope,
            name,
            progress,
            num_threads,
            groups,
        };
        let result = py.detach(|| -> Result<Tokenizer, crate::error::TctTrainError> {
            let schema = crate::compile::parse_schema_text(schema, "the schema")
                .map_err(crate::error::TctTrainError::Schema)?;
            let mut parsed = Vec::with_capacity(registry.len());
            for (uri, bytes) in &registry {
                let v = crate::compile::parse_schema_text(bytes, "the registered schema")
                    .map_err(crate::error::TctTrainError::Schema)?;
                parsed.push((uri.clone(), v));
            }
            Tokenizer::train(&schema, &parsed, &slices, &opts)
        });
        match result {
            Ok(inner) => {
                check_vocab_fits_u16(py, &inner)?;
                Ok(PyTokenizer { inner })
            }
            Err(crate::error::TctTrainError::Schema(e)) => Err(schema_error(py, e, None)),
            Err(crate::error::TctTrainError::Document(i, e)) => Err(encode_error(py, e, Some(i))),
        }
    }

    /// The ids of a partial document used as a generation prompt (see `Tokenizer::encode_prefix`).
    fn encode_prefix(&self, py: Python<'_>, doc: &[u8]) -> PyResult<Vec<u32>> {
        let inner = &self.inner;
        py.detach(|| crate::json::parse(doc).and_then(|v| inner.encode_prefix(&v)))
            .map_err(|e| encode_error(py, e, None))
    }

    /// A random document drawn under the matcher's mask: `(ids, json_text)`. For fuzzing.
    #[pyo3(signature = (seed, max_tokens = 512))]
    fn random_document(
        &self,
        py: Python<'_>,
        seed: u64,
        max_tokens: usize,
    ) -> PyResult<(Vec<u32>, String)> {
        let inner = &self.inner;
        py.detach(|| inner.random_document(seed, max_tokens))
            .map_err(|e| decode_error(py, e))
    }

    /// Raise DecodeError unless the matcher accepts `ids` id by id and ends complete (checking
    /// the allowed mask every `check_every` steps; 0: never).
    #[pyo3(signature = (ids, check_every = 0))]
    fn matcher_accepts(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        check_every: usize,
    ) -> PyResult<()> {
        let ids = ids_from_py(ids, self.inner.vocab_size())?;
        let inner = &self.inner;
        py.detach(|| inner.matcher_accepts(&ids, check_every))
            .map_err(|e| decode_error(py, e))
    }

    /// `[position_id(start)] + ids[start:end]`.
    fn extract_window(
        &self,
        ids: &Bound<'_, PyAny>,
        start: usize,
        end: usize,
    ) -> PyResult<Vec<u32>> {
        let ids = ids_from_py(ids, self.inner.vocab_size())?;
        if start > end || end > ids.len() {
            return Err(PyValueError::new_err(format!(
                "window [{start}, {end}) is not inside the {} ids",
                ids.len()
            )));
        }
        let window = self.inner.extract_window(&ids, start, end);
        // The position id must lie in `position_range` (starts past the last bucket share its
        // id); a tokenizer without position ids has none to give.
        let (first, last) = self.inner.position_range();
        match window.first() {
            Some(&p) if (first..last).contains(&p) => Ok(window),
            _ => Err(PyValueError::new_err(format!(
                "window start {start} has no position id: this tokenizer's position ids are \
                 {first}..{last}"
            ))),
        }
    }

    #[getter]
    fn position_range(&self) -> (u32, u32) {
        self.inner.position_range()
    }

    /// Number of base ids (bytes, structure, choices) before the trained ids.
    #[getter]
    fn base_size(&self) -> u32 {
        self.inner.vocab().base_size()
    }

    /// A fresh matcher; with `rules` (prepared for this tokenizer by `Rules`) it enforces
    /// them too.
    #[pyo3(signature = (rules = None))]
    fn matcher(&self, rules: Option<&PyRules>) -> PyMatcher {
        let mut inner = self.inner.matcher();
        if let Some(r) = rules {
            inner = inner.with_rules(r.enforced.clone());
        }
        PyMatcher {
            inner: GuidedMatcher::from_matcher(&self.inner, inner),
            vocab_size: self.inner.vocab_size(),
            steps: 0,
        }
    }

    /// The tokenizer's name (the schema's `$id`, or the name it was trained under).
    #[getter]
    fn name(&self) -> String {
        self.inner.identity().0
    }

    /// Content hash of the serialised tokenizer: what shards and checkpoints record.
    #[getter]
    fn hash(&self) -> String {
        self.inner.identity().1
    }

    /// Schema keywords or combinations that the matcher does not enforce exactly.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    #[getter]
    fn pad_id(&self) -> u32 {
        self.inner.pad_id()
    }

    #[getter]
    fn bos_id(&self) -> u32 {
        self.inner.bos_id()
    }

    #[getter]
    fn eos_id(&self) -> u32 {
        self.inner.eos_id()
    }
}

impl PyTokenizer {
    fn encode_detailed_inner(&self, py: Python<'_>, doc: &[u8]) -> PyResult<Encoding> {
        let inner = &self.inner;
        py.detach(|| inner.encode_json(doc))
            .map_err(|e| encode_error(py, e, None))
    }
}

enum BatchError {
    Encode(usize, EncodeError),
    IdTooLarge(usize, u32),
}

/// Token shards store ids as uint16 (docs/shard-format.md); a vocabulary that does not fit is a
/// bug in the core, caught here rather than as silently wrapped ids later.
fn check_vocab_fits_u16(py: Python<'_>, tok: &Tokenizer) -> PyResult<()> {
    let n = tok.vocab_size();
    if n > u32::from(u16::MAX) + 1 {
        return Err(tct_error(
            py,
            format!("vocabulary of {n} ids does not fit uint16"),
        ));
    }
    Ok(())
}

// ---- corpus encoding (tct-encode) ----
// Owned by the tct-encode work (rust/src/corpus); called by python/tct/cli_encode.py.

/// `encode_corpus(tokenizer, input, output, *, threads=1, val_fraction=0.0, seed=0,
/// num_shards=1, shard_index=0, max_tokens=None, progress=None, field=None, val_group=None,
/// follow_symlinks=False) -> dict`
///
/// Encodes a corpus into token shards (docs/shard-format.md) with the GIL released. `progress`
/// is called with a dict about every 200 ms (the GIL is taken only for that call, which is also
/// where Ctrl-C is noticed: the run stops, nothing is published, and the interrupt propagates).
/// The environment variable `TCT_TEST_FAIL_AFTER_DOCS=N` injects a fatal error after N documents
/// (crash tests).
#[pyfunction]
#[pyo3(signature = (tokenizer, input, output, *, threads=1, val_fraction=0.0, seed=0, num_shards=1, shard_index=0, max_tokens=None, progress=None, field=None, val_group=None, follow_symlinks=false))]
#[allow(clippy::too_many_arguments)]
fn encode_corpus<'py>(
    py: Python<'py>,
    tokenizer: &Bound<'py, PyTokenizer>,
    input: &str,
    output: &str,
    threads: usize,
    val_fraction: f64,
    seed: u64,
    num_shards: u64,
    shard_index: u64,
    max_tokens: Option<u64>,
    progress: Option<Py<PyAny>>,
    field: Option<String>,
    val_group: Option<String>,
    follow_symlinks: bool,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    use crate::corpus::{Counts, Options, Progress, RunError, TokenizerInfo};
    use pyo3::types::PyDict;

    let tok = tokenizer.get().inner.clone();
    let info = TokenizerInfo::of(&tok);
    let fail_after_docs = match std::env::var("TCT_TEST_FAIL_AFTER_DOCS") {
        Ok(v) => Some(v.parse::<u64>().map_err(|_| {
            PyValueError::new_err(format!("TCT_TEST_FAIL_AFTER_DOCS={v:?} is not a count"))
        })?),
        Err(_) => None,
    };
    let opts = Options {
        // Capped like every other thread count (see `pool`): `--threads 100000` used to start
        // threads until the machine ran out of pids. 0 stays 0, for the usage error.
        threads: threads.min(crate::pool::max_threads()),
        val_fraction,
        seed,
        num_shards,
        shard_index,
        max_tokens,
        fail_after_docs,
        field,
        val_group,
        follow_symlinks,
        ..Options::default()
    };
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut on_progress = |p: &Progress| -> Result<(), String> {
            Python::attach(|py| {
                let outcome = py.check_signals().and_then(|()| match &progress {
                    Some(f) => {
                        let d = PyDict::new(py);
                        d.set_item("items", p.items)?;
                        d.set_item("documents", p.documents)?;
                        d.set_item("rejected", p.rejected)?;
                        d.set_item("skipped_too_long", p.skipped_too_long)?;
                        d.set_item("tokens", p.tokens)?;
                        d.set_item("input_bytes", p.input_bytes)?;
                        d.set_item("elapsed_s", p.elapsed_s)?;
                        d.set_item("fraction", p.fraction)?;
                        d.set_item("finished", p.finished)?;
                        f.call1(py, (d,)).map(|_| ())
                    }
                    None => Ok(()),
                });
                outcome.map_err(|e| {
                    let message = e.to_string();
                    callback_error = Some(e);
                    message
                })
            })
        };
        crate::corpus::encode_corpus(
            &tok,
            &info,
            input,
            std::path::Path::new(output),
            &opts,
            &mut on_progress,
        )
    });
    match (&result, callback_error) {
        // The run published its outputs before the last progress call: a signal seen there came
        // too late to stop anything, and reporting it as an interrupt would claim that nothing
        // was written while complete outputs exist.
        (Ok(_), _) | (Err(_), None) => {}
        (Err(_), Some(e)) => return Err(e),
    }
    let summary = match result {
        Ok(s) => s,
        Err(RunError::Usage(m)) => return Err(PyValueError::new_err(m)),
        Err(e) => return Err(tct_error(py, e.to_string())),
    };
    let counts = |c: &Counts| -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("documents", c.documents)?;
        d.set_item("tokens", c.tokens)?;
        d.set_item("json_bytes", c.json_bytes)?;
        d.set_item("fallback_documents", c.fallback_documents)?;
        d.set_item("rejected", c.rejected)?;
        d.set_item("skipped_too_long", c.skipped_too_long)?;
        Ok(d)
    };
    let out = PyDict::new(py);
    out.set_item("train", counts(&summary.train)?)?;
    out.set_item("val", summary.val.as_ref().map(counts).transpose()?)?;
    let outputs: Vec<[String; 3]> = summary
        .outputs
        .iter()
        .map(|p| {
            [
                p.bin.display().to_string(),
                p.idx.display().to_string(),
                p.meta.display().to_string(),
            ]
        })
        .collect();
    out.set_item("outputs", outputs)?;
    out.set_item("items", summary.items)?;
    out.set_item("input_bytes", summary.input_bytes)?;
    out.set_item("elapsed_s", summary.elapsed_s)?;
    out.set_item("rejected_sample", summary.rejected_sample)?;
    out.set_item("fallback_pointers", summary.fallback_pointers)?;
    out.set_item("tokenizer", (info.name, info.hash, info.vocab_size))?;
    Ok(out)
}

/// `read_yaml(text) -> str`: one YAML 1.2 document (the rules `tct-encode` reads corpora
/// with: `on`/`yes` stay strings, `1e5` and `0b101` are numbers, `.inf` a string) as compact
/// JSON text. A parse error raises `ValueError` with the line and column.
#[pyfunction]
fn read_yaml(py: Python<'_>, text: &str) -> PyResult<String> {
    let text = text.to_owned();
    py.detach(move || {
        let value = crate::corpus::yaml::parse_yaml(&text).map_err(|e| e.to_string())?;
        let doc = crate::json::Json::from_value(&value).map_err(|e| e.to_string())?;
        let mut out = String::new();
        doc.write_compact(&mut out);
        Ok::<String, String>(out)
    })
    .map_err(PyValueError::new_err)
}

/// `CorpusReader(input, field=None, follow_symlinks=False, group_field=None)`: the documents of
/// a corpus (a tree of .json/.yml/.yaml files, one such file, a .jsonl/.jsonl.gz file) in
/// `tct-encode`'s order, read and parsed by the same Rust code. Iterating yields `(source,
/// json_text, error, group)`: at most one of `json_text` and `error` (why the input is
/// rejected) is not `None` (neither: the record's `field` is null, it holds no document);
/// `group` is the input's `group_field`, if it has one. A damaged input stream (a corrupt gzip
/// stream) raises `ValueError` instead: nothing read from it can be trusted, so it is not an
/// entry to skip.
#[pyclass(name = "CorpusReader", module = "tct._tct", unsendable)]
struct PyCorpusReader {
    input: crate::corpus::sources::Input,
    field: Option<String>,
    group_field: Option<String>,
}

#[pymethods]
impl PyCorpusReader {
    #[new]
    #[pyo3(signature = (input, field=None, follow_symlinks=false, group_field=None))]
    fn new(
        input: &str,
        field: Option<String>,
        follow_symlinks: bool,
        group_field: Option<String>,
    ) -> PyResult<Self> {
        let input = crate::corpus::sources::Input::open_with(input, false, follow_symlinks)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyCorpusReader {
            input,
            field,
            group_field,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[allow(clippy::type_complexity)]
    fn __next__(
        &mut self,
        py: Python<'_>,
    ) -> PyResult<Option<(String, Option<String>, Option<String>, Option<String>)>> {
        let Some(item) = self.input.next() else {
            return Ok(None);
        };
        if let crate::corpus::sources::Payload::Corrupt(reason) = &item.payload {
            return Err(PyValueError::new_err(reason.clone()));
        }
        let (field, group_field) = (self.field.as_deref(), self.group_field.as_deref());
        let (source, result) = py.detach(|| crate::corpus::read_document(item, field, group_field));
        Ok(Some(match result {
            Ok(Some((text, group))) => (source, Some(text), None, group),
            Ok(None) => (source, None, None, None),
            Err(reason) => (source, None, Some(reason), None),
        }))
    }
}

// ---- end of corpus encoding (tct-encode) ----

/// The extension module `tct._tct`. Users import `tct`, which re-exports these classes.
#[pymodule]
#[pyo3(name = "_tct")]
fn tct_extension(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyEncoding>()?;
    m.add_class::<PyMatcher>()?;
    m.add_class::<PyRules>()?;
    m.add_function(wrap_pyfunction!(encode_corpus, m)?)?; // tct-encode
    m.add_function(wrap_pyfunction!(read_yaml, m)?)?; // tct.read_yaml
    m.add_class::<PyCorpusReader>()?; // tct.read_corpus
    m.add_function(wrap_pyfunction!(fill_next_token_bitmask_batch, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

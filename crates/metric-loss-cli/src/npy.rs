//! Reading and writing `.npy` arrays through [`npyz`], with checks whose messages name
//! the file.
//!
//! - Embeddings: a 2-D `float32` or `float64` array `[n, d]`, C or Fortran order, either
//!   byte order, every value finite.
//! - Labels: `[n]` or `[n, 1]`, any integer dtype (`int8` … `int64`, `uint8` … `uint64`).
//! - Sample weights: a scalar (0-d array), `[n]` or `[n, 1]`, any float or integer dtype,
//!   every value finite.
//!
//! Before any data is read, the size the header announces is compared with the file's
//! length, so a corrupt header cannot make the reader allocate more than the file holds;
//! its shape is checked (overflow-checked product, at most one element per byte of the
//! file) even before npyz parses it, since npyz multiplies the dimensions unchecked.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar, TypeStr, WriterBuilder};

use crate::CliError;

/// A row-major matrix read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix<T> {
    /// The values, row-major (`rows * cols` of them).
    pub data: Vec<T>,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

/// Embeddings in the precision of their file.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatMatrix {
    /// A `float32` array.
    F32(Matrix<f32>),
    /// A `float64` array.
    F64(Matrix<f64>),
}

impl FloatMatrix {
    /// `"float32"` or `"float64"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            FloatMatrix::F32(_) => "float32",
            FloatMatrix::F64(_) => "float64",
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            FloatMatrix::F32(m) => m.rows,
            FloatMatrix::F64(m) => m.rows,
        }
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        match self {
            FloatMatrix::F32(m) => m.cols,
            FloatMatrix::F64(m) => m.cols,
        }
    }
}

/// Sample weights as read from a file, widened to `f64` (converted to the embeddings'
/// precision when the loss is evaluated).
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// A 0-d array: one weight for every example.
    Scalar(f64),
    /// One weight per example.
    PerExample(Vec<f64>),
}

/// Reads embeddings: a 2-D `float32` or `float64` array with finite values.
///
/// # Errors
/// A [`CliError`] naming `path`: missing or unreadable file, not a `.npy` file, truncated
/// data, a rank other than 2, another dtype, a NaN or infinite value.
pub fn read_embeddings(path: &Path) -> Result<FloatMatrix, CliError> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    let order = npy.order();
    if shape.len() != 2 {
        return Err(CliError::in_file(
            path,
            format!(
                "expected a 2-D array [n, d] of embeddings, found shape {}",
                fmt_shape(&shape)
            ),
        ));
    }
    let (rows, cols) = (to_usize(path, shape[0])?, to_usize(path, shape[1])?);
    let expected = "float32 or float64 embeddings";
    let numbers = read_numbers(path, npy, expected, false)?;
    let count = match &numbers {
        Numbers::F32(v) => v.len(),
        Numbers::F64(v) => v.len(),
        Numbers::Int(v) => v.len(),
        Numbers::Uint(v) => v.len(),
    };
    if rows.checked_mul(cols) != Some(count) {
        return Err(CliError::in_file(
            path,
            format!("shape [{rows}, {cols}] does not match the {count} values read"),
        ));
    }
    let matrix = match numbers {
        Numbers::F32(v) => FloatMatrix::F32(to_matrix(v, rows, cols, order)),
        Numbers::F64(v) => FloatMatrix::F64(to_matrix(v, rows, cols, order)),
        // Not produced with `allow_int = false`; kept as an error rather than a panic.
        Numbers::Int(_) | Numbers::Uint(_) => {
            return Err(CliError::in_file(
                path,
                format!("expected {expected}, found integers"),
            ))
        }
    };
    match &matrix {
        FloatMatrix::F32(m) => check_finite(path, &m.data, m.cols)?,
        FloatMatrix::F64(m) => check_finite(path, &m.data, m.cols)?,
    }
    Ok(matrix)
}

/// Reads labels: `[n]` or `[n, 1]`, any integer dtype, as `i64`.
///
/// # Errors
/// A [`CliError`] naming `path`: as [`read_embeddings`], plus a `uint64` label above
/// `i64::MAX`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, CliError> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    if !is_column(&shape) {
        return Err(CliError::in_file(
            path,
            format!(
                "expected a 1-D array [n] (or [n, 1]) of labels, found shape {}",
                fmt_shape(&shape)
            ),
        ));
    }
    let expected = "integer labels (int8 to int64 or uint8 to uint64)";
    match read_numbers(path, npy, expected, true)? {
        Numbers::Int(v) => Ok(v),
        Numbers::Uint(v) => v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                i64::try_from(x).map_err(|_| {
                    CliError::in_file(
                        path,
                        format!("label {x} at index {i} does not fit in int64"),
                    )
                })
            })
            .collect(),
        Numbers::F32(_) | Numbers::F64(_) => Err(CliError::in_file(
            path,
            format!("expected {expected}, found a float array"),
        )),
    }
}

/// Reads sample weights: a scalar (0-d), `[n]` or `[n, 1]`, any float or integer dtype,
/// every value finite.
///
/// # Errors
/// A [`CliError`] naming `path`, as [`read_embeddings`].
pub fn read_weights(path: &Path) -> Result<Weights, CliError> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    if !shape.is_empty() && !is_column(&shape) {
        return Err(CliError::in_file(
            path,
            format!(
                "expected sample weights of shape [n] (or [n, 1], or a scalar), found shape {}",
                fmt_shape(&shape)
            ),
        ));
    }
    let values: Vec<f64> = match read_numbers(path, npy, "float or integer sample weights", true)? {
        Numbers::F32(v) => v.into_iter().map(f64::from).collect(),
        Numbers::F64(v) => v,
        // Weights are multipliers: the rounding of huge integers is irrelevant.
        #[allow(clippy::cast_precision_loss)]
        Numbers::Int(v) => v.into_iter().map(|x| x as f64).collect(),
        #[allow(clippy::cast_precision_loss)]
        Numbers::Uint(v) => v.into_iter().map(|x| x as f64).collect(),
    };
    if let Some(i) = values.iter().position(|w| !w.is_finite()) {
        return Err(CliError::in_file(
            path,
            format!(
                "sample weight {} at index {i} is not finite; every weight must be finite",
                values[i]
            ),
        ));
    }
    if shape.is_empty() {
        match values.first() {
            Some(w) => Ok(Weights::Scalar(*w)),
            None => Err(CliError::in_file(path, "a scalar array without a value")),
        }
    } else {
        Ok(Weights::PerExample(values))
    }
}

/// Writes a row-major `rows x cols` matrix as a C-order `.npy` file of `T`'s dtype
/// (`<f4` for `f32`, `<f8` for `f64`).
///
/// # Errors
/// A [`CliError`] naming `path` when it cannot be created or written, or when `data`
/// does not hold `rows * cols` values.
pub fn write_matrix<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    data: &[T],
    rows: usize,
    cols: usize,
) -> Result<(), CliError> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(CliError::in_file(
            path,
            format!(
                "cannot write {} values as a [{rows}, {cols}] array",
                data.len()
            ),
        ));
    }
    let io = |e: std::io::Error| CliError::in_file(path, format!("cannot write: {e}"));
    let file = File::create(path).map_err(io)?;
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[rows as u64, cols as u64])
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
}

/// The values of a file, in the widest type of their kind.
enum Numbers {
    Int(Vec<i64>),
    Uint(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn open(path: &Path) -> Result<NpyFile<BufReader<File>>, CliError> {
    let file =
        File::open(path).map_err(|e| CliError::in_file(path, format!("cannot open: {e}")))?;
    let file_len = file.metadata().ok().map(|m| m.len());
    let mut reader = BufReader::new(file);
    check_shape(path, &mut reader, file_len)?;
    let header = NpyHeader::from_reader(&mut reader)
        .map_err(|e| CliError::in_file(path, format!("not a valid .npy file ({e})")))?;
    // The data starts where the header ends; the header announces how much there is.
    let data_len = reader
        .stream_position()
        .ok()
        .zip(file_len)
        .map(|(start, len)| len.saturating_sub(start));
    if let (Some(available), Some(item)) = (data_len, header.dtype().num_bytes()) {
        let need = header
            .shape()
            .iter()
            .try_fold(item as u64, |acc, &dim| acc.checked_mul(dim));
        if need.is_none_or(|need| need > available) {
            let need = need.map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string());
            return Err(CliError::in_file(
                path,
                format!(
                    "truncated .npy file: its header announces shape {} of {} ({need} bytes of data) but the file holds {available}",
                    fmt_shape(header.shape()),
                    dtype_name(&header.dtype())
                ),
            ));
        }
    }
    Ok(NpyFile::with_header(header, reader))
}

/// Refuses a header whose shape announces more elements than the file has bytes, or
/// whose product overflows u64, before npyz sees it: npyz multiplies the dimensions
/// unchecked (a panic in debug builds, a wrapped and too small size in release ones). A
/// header this cannot read is left to npyz, which reports it; the reader is rewound.
fn check_shape(
    path: &Path,
    reader: &mut BufReader<File>,
    file_len: Option<u64>,
) -> Result<(), CliError> {
    let text = read_header_text(reader);
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| CliError::in_file(path, format!("cannot read: {e}")))?;
    let Some(dims) = text.as_deref().and_then(header_shape) else {
        return Ok(());
    };
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, dim| dim.and_then(|d| acc.checked_mul(d)));
    let too_large = match (elements, file_len) {
        (None, _) => true,
        // Every dtype the CLI reads takes at least one byte per element.
        (Some(elements), Some(len)) => elements > len,
        (Some(_), None) => false,
    };
    if too_large {
        let shape: Vec<String> = dims
            .iter()
            .map(|d| d.map_or_else(|| "(beyond 2^64)".to_owned(), |d| d.to_string()))
            .collect();
        let len = file_len.map_or_else(|| "?".to_owned(), |l| l.to_string());
        return Err(CliError::in_file(
            path,
            format!(
                "invalid .npy header: shape [{}] announces more elements than the file's {len} bytes can hold",
                shape.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The header dictionary's text, or `None` when the preamble is not a `.npy` one (npyz
/// then reports the problem). Reads no more than the file holds.
fn read_header_text(reader: &mut BufReader<File>) -> Option<String> {
    let mut preamble = [0u8; 8];
    reader.read_exact(&mut preamble).ok()?;
    if &preamble[..6] != b"\x93NUMPY" {
        return None;
    }
    let header_len = if preamble[6] == 1 {
        let mut b = [0u8; 2];
        reader.read_exact(&mut b).ok()?;
        u64::from(u16::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        reader.read_exact(&mut b).ok()?;
        u64::from(u32::from_le_bytes(b))
    };
    let mut text = Vec::new();
    reader.take(header_len).read_to_end(&mut text).ok()?;
    String::from_utf8(text).ok()
}

/// The dimensions of the header's `'shape': (…)` entry, `None` for a dimension beyond
/// u64; `None` overall when there is no such entry of integers.
fn header_shape(text: &str) -> Option<Vec<Option<u64>>> {
    let at = text.find("'shape'").or_else(|| text.find("\"shape\""))?;
    let rest = text[at + 7..].trim_start().strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('(')?;
    let inner = &rest[..rest.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            // Python 2 writes long integers with an `L` suffix.
            let digits = t.strip_suffix('L').unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u64>().ok())
        })
        .collect()
}

fn read_numbers(
    path: &Path,
    npy: NpyFile<BufReader<File>>,
    expected: &str,
    allow_int: bool,
) -> Result<Numbers, CliError> {
    let dtype = npy.dtype();
    let wrong = || {
        CliError::in_file(
            path,
            format!("expected {expected}, found dtype {}", dtype_name(&dtype)),
        )
    };
    let DType::Plain(ts) = &dtype else {
        return Err(wrong());
    };
    let read = |e: std::io::Error| CliError::in_file(path, format!("cannot read the data ({e})"));
    macro_rules! ints {
        ($t:ty, $variant:ident, $wide:ty) => {
            npy.into_vec::<$t>()
                .map(|v| Numbers::$variant(v.into_iter().map(<$wide>::from).collect()))
                .map_err(read)
        };
    }
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map(Numbers::F32).map_err(read),
        (TypeChar::Float, 8) => npy.into_vec::<f64>().map(Numbers::F64).map_err(read),
        (TypeChar::Int, 1) if allow_int => ints!(i8, Int, i64),
        (TypeChar::Int, 2) if allow_int => ints!(i16, Int, i64),
        (TypeChar::Int, 4) if allow_int => ints!(i32, Int, i64),
        (TypeChar::Int, 8) if allow_int => npy.into_vec::<i64>().map(Numbers::Int).map_err(read),
        (TypeChar::Uint, 1) if allow_int => ints!(u8, Uint, u64),
        (TypeChar::Uint, 2) if allow_int => ints!(u16, Uint, u64),
        (TypeChar::Uint, 4) if allow_int => ints!(u32, Uint, u64),
        (TypeChar::Uint, 8) if allow_int => npy.into_vec::<u64>().map(Numbers::Uint).map_err(read),
        _ => Err(wrong()),
    }
}

/// numpy's name for a dtype, with its descriptor: `int64 ('<i8')`.
fn dtype_name(dtype: &DType) -> String {
    match dtype {
        DType::Plain(ts) => match numpy_name(ts) {
            Some(name) => format!("{name} ('{ts}')"),
            None => format!("'{ts}'"),
        },
        other => format!("{} (a structured dtype)", other.descr()),
    }
}

fn numpy_name(ts: &TypeStr) -> Option<String> {
    let bits = ts.size_field() * 8;
    Some(match ts.type_char() {
        TypeChar::Bool => "bool".into(),
        TypeChar::Int => format!("int{bits}"),
        TypeChar::Uint => format!("uint{bits}"),
        TypeChar::Float => format!("float{bits}"),
        TypeChar::Complex => format!("complex{bits}"),
        TypeChar::Object => "object".into(),
        TypeChar::UnicodeStr => "str".into(),
        TypeChar::ByteStr => "bytes".into(),
        _ => return None,
    })
}

fn fmt_shape(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn is_column(shape: &[u64]) -> bool {
    shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)
}

fn to_usize(path: &Path, dim: u64) -> Result<usize, CliError> {
    usize::try_from(dim)
        .map_err(|_| CliError::in_file(path, format!("dimension {dim} is too large")))
}

fn to_matrix<T: Copy>(data: Vec<T>, rows: usize, cols: usize, order: Order) -> Matrix<T> {
    let data = match order {
        Order::C => data,
        // Column-major on disk: element (r, c) is at c * rows + r.
        Order::Fortran => {
            let mut out = Vec::with_capacity(data.len());
            for r in 0..rows {
                out.extend((0..cols).map(|c| data[c * rows + r]));
            }
            out
        }
    };
    Matrix { data, rows, cols }
}

fn check_finite<T: Copy + Into<f64>>(path: &Path, data: &[T], cols: usize) -> Result<(), CliError> {
    match data.iter().position(|v| !(*v).into().is_finite()) {
        None => Ok(()),
        Some(at) => Err(CliError::in_file(
            path,
            format!(
                "embedding value {} at row {}, column {} is not finite; every value must be finite",
                data[at].into(),
                at / cols.max(1),
                at % cols.max(1)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("metric-loss-cli-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn fortran_order_is_transposed() {
        let path = temp("fortran.npy");
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3])
            .order(Order::Fortran)
            .writer(BufWriter::new(File::create(&path).unwrap()))
            .begin_nd()
            .unwrap();
        // Column-major storage of [[1, 2, 3], [4, 5, 6]].
        w.extend([1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        w.finish().unwrap();
        let FloatMatrix::F64(m) = read_embeddings(&path).unwrap() else {
            panic!("float64 expected");
        };
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn round_trip_and_dtype_names() {
        let path = temp("rt.npy");
        write_matrix(&path, &[1.0f32, 2.0, 3.0, 4.0], 2, 2).unwrap();
        assert_eq!(
            read_embeddings(&path).unwrap(),
            FloatMatrix::F32(Matrix {
                data: vec![1.0, 2.0, 3.0, 4.0],
                rows: 2,
                cols: 2
            })
        );
        let err = read_labels(&path).unwrap_err().to_string();
        assert!(err.contains("expected a 1-D array"), "{err}");
        assert_eq!(
            dtype_name(&DType::Plain("<u2".parse().unwrap())),
            "uint16 ('<u2')"
        );
    }

    #[test]
    fn unsigned_labels_must_fit() {
        let path = temp("u64.npy");
        npyz::to_file_1d(&path, [1u64, u64::MAX]).unwrap();
        let err = read_labels(&path).unwrap_err().to_string();
        assert!(err.ends_with("does not fit in int64"), "{err}");
        let path = temp("u8.npy");
        npyz::to_file_1d(&path, [1u8, 255]).unwrap();
        assert_eq!(read_labels(&path).unwrap(), vec![1, 255]);
    }
}

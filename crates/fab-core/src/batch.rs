//! Row-major `n × dim` sample batches: an owned [`Batch`] and the borrowed views [`BatchRef`] / [`BatchMut`].

use crate::error::ShapeError;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

fn check_shape(len: usize, dim: usize) -> Result<(), ShapeError> {
    if dim == 0 {
        return Err(ShapeError::ZeroDim);
    }
    if !len.is_multiple_of(dim) {
        return Err(ShapeError::Ragged { len, dim });
    }
    Ok(())
}

/// An owned batch of `n_rows` points of dimension `dim`, stored row after row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    data: Vec<f64>,
    dim: usize,
}

impl Batch {
    /// A batch of `n_rows × dim` zeros.
    ///
    /// # Panics
    /// If `dim == 0`.
    pub fn zeros(n_rows: usize, dim: usize) -> Self {
        assert!(dim > 0, "Batch::zeros: dimension must be at least 1");
        Self { data: vec![0.0; n_rows * dim], dim }
    }

    /// Wraps a flat row-major buffer; fails if it is not a whole number of rows.
    pub fn from_vec(data: Vec<f64>, dim: usize) -> Result<Self, ShapeError> {
        check_shape(data.len(), dim)?;
        Ok(Self { data, dim })
    }

    /// Builds a batch from rows, which must all have the same length.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, ShapeError> {
        let dim = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * dim);
        for row in rows {
            let row = row.as_ref();
            if row.len() != dim {
                return Err(ShapeError::Mismatch {
                    expected: format!("rows of length {dim}"),
                    got: format!("a row of length {}", row.len()),
                });
            }
            data.extend_from_slice(row);
        }
        Self::from_vec(data, dim)
    }

    /// Copies an `ndarray` matrix (any layout) into a batch.
    pub fn from_array(a: ArrayView2<'_, f64>) -> Result<Self, ShapeError> {
        let dim = a.ncols();
        Self::from_vec(a.iter().copied().collect(), dim)
    }

    /// Takes ownership of an `ndarray` matrix without copying when it is in standard layout.
    pub fn from_array2(a: Array2<f64>) -> Result<Self, ShapeError> {
        let dim = a.ncols();
        if !a.is_standard_layout() {
            return Self::from_array(a.view());
        }
        let (data, offset) = a.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        Self::from_vec(data, dim)
    }

    /// Number of coordinates per point.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of points.
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.dim
    }
    /// True when the batch holds no points.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The flat row-major buffer.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }
    /// The flat row-major buffer, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }
    /// Gives back the flat buffer.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }
    /// Point `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// Point `i`, mutably.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// Iterates over points.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.dim)
    }
    /// A borrowed view.
    pub fn view(&self) -> BatchRef<'_> {
        BatchRef { data: &self.data, dim: self.dim }
    }
    /// A mutable borrowed view.
    pub fn view_mut(&mut self) -> BatchMut<'_> {
        BatchMut { data: &mut self.data, dim: self.dim }
    }
    /// Appends one point.
    ///
    /// # Panics
    /// If `row.len() != self.dim()`.
    pub fn push_row(&mut self, row: &[f64]) {
        assert_eq!(row.len(), self.dim, "Batch::push_row: row length differs from the batch dimension");
        self.data.extend_from_slice(row);
    }
    /// A new batch holding the rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Batch {
        let mut data = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Batch { data, dim: self.dim }
    }
    /// The batch as an `ndarray` view (zero copy).
    pub fn as_array(&self) -> ArrayView2<'_, f64> {
        self.view().as_array()
    }
    /// Converts into an owned `ndarray` matrix (zero copy).
    pub fn into_array(self) -> Array2<f64> {
        let n = self.n_rows();
        Array2::from_shape_vec((n, self.dim), self.data).expect("a Batch is always a whole number of rows")
    }
}

/// A borrowed, read-only row-major batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    data: &'a [f64],
    dim: usize,
}

impl<'a> BatchRef<'a> {
    /// Views a flat row-major buffer; fails if it is not a whole number of rows.
    pub fn try_new(data: &'a [f64], dim: usize) -> Result<Self, ShapeError> {
        check_shape(data.len(), dim)?;
        Ok(Self { data, dim })
    }
    /// Views a flat row-major buffer.
    ///
    /// # Panics
    /// If `dim == 0` or `data.len()` is not a multiple of `dim` (a programming error inside fab).
    pub fn new(data: &'a [f64], dim: usize) -> Self {
        match Self::try_new(data, dim) {
            Ok(b) => b,
            Err(e) => panic!("BatchRef::new: {e}"),
        }
    }
    /// Views an `ndarray` matrix in standard layout (zero copy).
    pub fn from_array(a: &ArrayView2<'a, f64>) -> Result<Self, ShapeError> {
        let data = a.to_slice().ok_or(ShapeError::NotRowMajor)?;
        Self::try_new(data, a.ncols())
    }
    /// Number of coordinates per point.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of points.
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.dim
    }
    /// True when the view holds no points.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The flat row-major buffer.
    pub fn as_slice(&self) -> &'a [f64] {
        self.data
    }
    /// Point `i`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// Iterates over points.
    pub fn rows(&self) -> std::slice::ChunksExact<'a, f64> {
        self.data.chunks_exact(self.dim)
    }
    /// Rows `start..end`.
    pub fn slice_rows(&self, start: usize, end: usize) -> BatchRef<'a> {
        BatchRef { data: &self.data[start * self.dim..end * self.dim], dim: self.dim }
    }
    /// Splits into consecutive views of at most `rows_per_chunk` rows (for rayon).
    pub fn chunks(&self, rows_per_chunk: usize) -> impl Iterator<Item = BatchRef<'a>> + 'a {
        let dim = self.dim;
        self.data.chunks(rows_per_chunk.max(1) * dim).map(move |data| BatchRef { data, dim })
    }
    /// Copies into an owned batch.
    pub fn to_batch(&self) -> Batch {
        Batch { data: self.data.to_vec(), dim: self.dim }
    }
    /// The view as an `ndarray` view (zero copy).
    pub fn as_array(&self) -> ArrayView2<'a, f64> {
        ArrayView2::from_shape((self.n_rows(), self.dim), self.data)
            .expect("a BatchRef is always a whole number of rows")
    }
}

/// A borrowed, writable row-major batch.
#[derive(Debug)]
pub struct BatchMut<'a> {
    data: &'a mut [f64],
    dim: usize,
}

impl<'a> BatchMut<'a> {
    /// Views a flat row-major buffer; fails if it is not a whole number of rows.
    pub fn try_new(data: &'a mut [f64], dim: usize) -> Result<Self, ShapeError> {
        check_shape(data.len(), dim)?;
        Ok(Self { data, dim })
    }
    /// Views a flat row-major buffer.
    ///
    /// # Panics
    /// If `dim == 0` or `data.len()` is not a multiple of `dim` (a programming error inside fab).
    pub fn new(data: &'a mut [f64], dim: usize) -> Self {
        match Self::try_new(data, dim) {
            Ok(b) => b,
            Err(e) => panic!("BatchMut::new: {e}"),
        }
    }
    /// Views an `ndarray` matrix in standard layout (zero copy).
    pub fn from_array(a: &'a mut ArrayViewMut2<'_, f64>) -> Result<Self, ShapeError> {
        let dim = a.ncols();
        let data = a.as_slice_mut().ok_or(ShapeError::NotRowMajor)?;
        Self::try_new(data, dim)
    }
    /// Number of coordinates per point.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of points.
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.dim
    }
    /// True when the view holds no points.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The flat row-major buffer.
    pub fn as_slice(&self) -> &[f64] {
        self.data
    }
    /// The flat row-major buffer, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        self.data
    }
    /// Gives back the whole borrowed buffer.
    pub fn into_slice(self) -> &'a mut [f64] {
        self.data
    }
    /// Point `i`, mutably.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// Iterates over points, mutably.
    pub fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f64> {
        self.data.chunks_exact_mut(self.dim)
    }
    /// A read-only view of the same rows.
    pub fn as_ref(&self) -> BatchRef<'_> {
        BatchRef { data: self.data, dim: self.dim }
    }
    /// Reborrows, so a `BatchMut` can be passed on without being consumed.
    pub fn reborrow(&mut self) -> BatchMut<'_> {
        BatchMut { data: self.data, dim: self.dim }
    }
    /// Splits into consecutive views of at most `rows_per_chunk` rows (for rayon).
    pub fn into_chunks(self, rows_per_chunk: usize) -> impl Iterator<Item = BatchMut<'a>> {
        let dim = self.dim;
        self.data.chunks_mut(rows_per_chunk.max(1) * dim).map(move |data| BatchMut { data, dim })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_and_zero_dim_buffers_are_refused() {
        assert_eq!(Batch::from_vec(vec![1.0; 5], 2), Err(ShapeError::Ragged { len: 5, dim: 2 }));
        assert_eq!(Batch::from_vec(vec![], 0), Err(ShapeError::ZeroDim));
        assert!(Batch::from_rows(&[vec![1.0, 2.0], vec![3.0]]).is_err());
    }

    #[test]
    fn rows_round_trip_through_ndarray() {
        let b = Batch::from_rows(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).unwrap();
        assert_eq!(b.n_rows(), 2);
        assert_eq!(b.row(1), &[4.0, 5.0, 6.0]);
        let a = b.clone().into_array();
        assert_eq!(a[[1, 2]], 6.0);
        assert_eq!(Batch::from_array2(a).unwrap(), b);
        let t = b.as_array().t().to_owned();
        // A transposed (column-major) array is copied in logical order.
        assert_eq!(Batch::from_array2(t).unwrap().row(0), &[1.0, 4.0]);
    }

    #[test]
    fn chunks_cover_every_row_once() {
        let b = Batch::from_vec((0..14).map(f64::from).collect(), 2).unwrap();
        let sizes: Vec<usize> = b.view().chunks(3).map(|c| c.n_rows()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let mut m = b.clone();
        for (k, mut c) in m.view_mut().into_chunks(3).enumerate() {
            for r in c.rows_mut() {
                r[0] = k as f64;
            }
        }
        assert_eq!(m.row(6)[0], 2.0);
        assert_eq!(b.select_rows(&[6, 0]).as_slice(), &[12.0, 13.0, 0.0, 1.0]);
    }

    #[test]
    fn non_standard_views_are_refused() {
        let a = Array2::<f64>::zeros((3, 2));
        let t = a.t();
        assert_eq!(BatchRef::from_array(&t).unwrap_err(), ShapeError::NotRowMajor);
    }
}

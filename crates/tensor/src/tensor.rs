use serde::{Deserialize, Serialize};

use crate::{Element, ShapeError};

/// A dense row-major tensor with a static shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Number of elements of a shape (1 for a scalar of rank 0).
pub fn num_elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a shape, in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    strides
}

impl<T: Element> Tensor<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self, ShapeError> {
        if num_elements(&shape) != data.len() {
            crate::shape_bail!(
                "shape {:?} needs {} elements but {} were given",
                shape,
                num_elements(&shape),
                data.len()
            );
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = num_elements(&shape);
        Tensor { shape, data: vec![T::ZERO; len] }
    }

    pub fn filled(shape: Vec<usize>, value: T) -> Self {
        let len = num_elements(&shape);
        Tensor { shape, data: vec![value; len] }
    }

    pub fn scalar(value: T) -> Self {
        Tensor { shape: vec![], data: vec![value] }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Same elements, new shape of the same size.
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Self, ShapeError> {
        if num_elements(&shape) != self.data.len() {
            crate::shape_bail!("cannot reshape {:?} into {:?}", self.shape, shape);
        }
        self.shape = shape;
        Ok(self)
    }

    pub fn map<U: Element>(&self, f: impl Fn(T) -> U) -> Tensor<U> {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|&x| f(x)).collect() }
    }

    /// Elementwise combination of two tensors of the same shape.
    pub fn zip_with(&self, other: &Self, f: impl Fn(T, T) -> T) -> Result<Self, ShapeError> {
        if self.shape != other.shape {
            crate::shape_bail!("elementwise operands differ in shape: {:?} vs {:?}", self.shape, other.shape);
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().zip(&other.data).map(|(&a, &b)| f(a, b)).collect(),
        })
    }

    pub fn add(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, T::add)
    }

    pub fn sub(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, T::sub)
    }

    /// Elementwise (Hadamard) product.
    pub fn mul(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, T::mul)
    }

    pub fn neg(&self) -> Self {
        self.map(T::neg)
    }

    pub fn add_assign(&mut self, other: &Self) -> Result<(), ShapeError> {
        if self.shape != other.shape {
            crate::shape_bail!("elementwise operands differ in shape: {:?} vs {:?}", self.shape, other.shape);
        }
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a = a.add(b);
        }
        Ok(())
    }

    pub fn size_in_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<T>()
    }
}

//! t5g runs Google's T5Gemma encoder-decoder language models on CPUs.
//!
//! Data flows one way: a GGUF file ([`gguf`]) is memory-mapped, its weights are viewed in
//! place by a model ([`model`]), whose forward pass calls the operations in [`ops`] and the
//! matrix kernels in [`kernels`]. [`convert`] writes such files from Hugging Face checkpoints.

#![warn(missing_docs)]

pub mod bench;
#[allow(non_camel_case_types)]
pub mod capi;
pub mod convert;
pub mod error;
pub mod generate;
pub mod gguf;
#[cfg(feature = "hub")]
pub mod hub;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod quant;
pub mod session;
pub mod summarize;
pub mod tokenizer;

pub use error::{Error, Result};
pub use generate::{
    BeamParams, Flow, GenerateOptions, Generation, SamplingParams, StopReason, Strategy,
};
pub use model::{AttentionPrecision, Model};
pub use session::{CancelToken, Session};
pub use summarize::{Progress, SummarizeOptions, Summary, SummaryLength};
pub use tokenizer::Tokenizer;

//! The embedding API: one [`Model`] loaded per process, any number of cheap [`Session`]s over
//! it (one per request or per thread), each cancellable from another thread.
//!
//! ```
//! # fn main() -> t5g::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("model.gguf");
//! # t5g::convert::convert(&t5g::convert::ConvertOptions::new("tests/fixtures/t5gemma_balanced", &path))?;
//! use t5g::{Flow, GenerateOptions, Model};
//!
//! let model = Model::load(&path)?;
//! let mut session = model.session();
//! let opts = GenerateOptions { max_new_tokens: 8, ..Default::default() };
//! let mut pieces = String::new();
//! let text = session.generate_text("Hello", &opts, |piece| {
//!     pieces.push_str(piece);
//!     Flow::Continue
//! })?;
//! assert_eq!(text, pieces);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use crate::generate::{self, Flow, GenerateOptions, Generation};
use crate::model::Model;
use crate::summarize::{self, Progress, SummarizeOptions, Summary};
use crate::tokenizer::{DecodeOptions, EncodeOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cancels a running generation from any thread; the call then returns [`Error::Cancelled`].
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks the session's current and future calls to stop at the next token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request's worth of state over a shared model. Creating one costs nothing: caches are
/// made per call and dropped with it; the weights are never copied.
pub struct Session<'m> {
    model: &'m Model,
    cancel: CancelToken,
}

impl Model {
    /// A new session over this model.
    pub fn session(&self) -> Session<'_> {
        Session {
            model: self,
            cancel: CancelToken::default(),
        }
    }
}

impl<'m> Session<'m> {
    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// A handle that cancels this session's calls from another thread.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Generates from token ids; `on_token` sees each id as it is produced.
    ///
    /// ```
    /// # fn main() -> t5g::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("model.gguf");
    /// # t5g::convert::convert(&t5g::convert::ConvertOptions::new("tests/fixtures/t5gemma_unbalanced", &path))?;
    /// let model = t5g::Model::load(&path)?;
    /// let out = model.session().generate_ids(&[5, 6, 7], &Default::default(), |_| t5g::Flow::Continue)?;
    /// assert!(!out.ids.is_empty() && out.ids.len() <= 64);
    /// # Ok(())
    /// # }
    /// ```
    pub fn generate_ids(
        &mut self,
        input_ids: &[u32],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> Flow,
    ) -> Result<Generation> {
        let cancel = self.cancel.clone();
        let out = generate::generate(self.model, input_ids, opts, &mut |id| {
            if cancel.is_cancelled() {
                return Flow::Stop;
            }
            on_token(id)
        })?;
        self.check_cancelled()?;
        Ok(out)
    }

    /// Generates text from a text prompt (BOS as the tokenizer says; control tokens in the
    /// prompt are not recognized). `on_piece` receives UTF-8-complete pieces as they come.
    pub fn generate_text(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        mut on_piece: impl FnMut(&str) -> Flow,
    ) -> Result<String> {
        let tokenizer = self.model.require_tokenizer()?;
        let ids = tokenizer.encode(
            prompt,
            EncodeOptions {
                add_bos: tokenizer.add_bos_token(),
                ..Default::default()
            },
        );
        if ids.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        let mut decoder = tokenizer.stream_decoder(DecodeOptions::default());
        let mut text = String::new();
        let mut failure = None;
        self.generate_ids(&ids, opts, |id| match decoder.push(id) {
            Ok(piece) if piece.is_empty() => Flow::Continue,
            Ok(piece) => {
                text.push_str(&piece);
                on_piece(&piece)
            }
            Err(e) => {
                failure = Some(e);
                Flow::Stop
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let rest = decoder.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_piece(&rest);
        }
        Ok(text)
    }

    /// Summarizes a document (chunking it when it is longer than the encoder budget).
    pub fn summarize(
        &mut self,
        text: &str,
        opts: &SummarizeOptions,
        mut on_piece: impl FnMut(&str) -> Flow,
        mut on_progress: impl FnMut(Progress),
    ) -> Result<Summary> {
        let tokenizer = self.model.require_tokenizer()?;
        let cancel = self.cancel.clone();
        let summary = summarize::summarize(
            self.model,
            tokenizer,
            text,
            opts,
            &mut |piece| {
                if cancel.is_cancelled() {
                    Flow::Stop
                } else {
                    on_piece(piece)
                }
            },
            &mut on_progress,
        )?;
        self.check_cancelled()?;
        Ok(summary)
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

//! Summarization: the encoder prompt for pre-trained and instruction-tuned checkpoints, and
//! map-reduce over documents longer than the encoder input budget (summarize chunks cut at
//! paragraph and sentence boundaries, then summarize the summaries).

use crate::error::{Error, Result};
use crate::generate::{self, Flow, GenerateOptions, Generation, StopReason};
use crate::model::Model;
use crate::tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};
use std::time::Duration;

/// How long a summary to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SummaryLength {
    /// One or two sentences.
    Short,
    /// A paragraph.
    #[default]
    Medium,
    /// Several paragraphs.
    Long,
}

impl SummaryLength {
    /// Default token budget for this length.
    pub fn max_new_tokens(self) -> usize {
        match self {
            SummaryLength::Short => 64,
            SummaryLength::Medium => 160,
            SummaryLength::Long => 400,
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            SummaryLength::Short => "in one or two sentences",
            SummaryLength::Medium => "in one paragraph",
            SummaryLength::Long => "in detail, in several paragraphs",
        }
    }
}

/// Everything that controls one summary.
#[derive(Clone, Debug)]
pub struct SummarizeOptions {
    /// Requested length (sets the instruction and the default token budget).
    pub length: SummaryLength,
    /// Token choice and limits; `max_new_tokens` here overrides the length's default when
    /// `max_new_tokens_set` is true.
    pub generate: GenerateOptions,
    /// Whether `generate.max_new_tokens` was given explicitly.
    pub max_new_tokens_set: bool,
    /// Largest encoder input; longer documents are summarized in chunks.
    pub max_input_tokens: usize,
    /// Replaces the built-in prompt: `{text}` is replaced by the document and `{instruction}`
    /// by the length instruction. Control tokens written in the template are recognized.
    pub prompt_template: Option<String>,
    /// Generation stops when the output contains one of these (it is cut before it).
    pub stop_strings: Vec<String>,
}

impl Default for SummarizeOptions {
    fn default() -> Self {
        SummarizeOptions {
            length: SummaryLength::Medium,
            generate: GenerateOptions::default(),
            max_new_tokens_set: false,
            max_input_tokens: 2048,
            prompt_template: None,
            stop_strings: Vec::new(),
        }
    }
}

/// Progress of a long summary, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Summarization round (1 = the document's chunks, 2 = their summaries, ...).
    pub round: usize,
    /// Chunks done in this round.
    pub done: usize,
    /// Chunks in this round.
    pub total: usize,
}

/// A finished summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// The summary text.
    pub text: String,
    /// Tokens of the document.
    pub input_tokens: usize,
    /// Tokens generated for the final summary.
    pub output_tokens: usize,
    /// Chunks the document was cut into (1 when it fit).
    pub chunks: usize,
    /// Map-reduce rounds (1 when it fit).
    pub rounds: usize,
    /// Why the final generation stopped.
    pub stop: StopReason,
    /// Encoder time over all rounds, seconds.
    pub encode_seconds: f64,
    /// Decoder time over all rounds, seconds.
    pub decode_seconds: f64,
}

/// Most map-reduce rounds before giving up (each round shrinks the text many times over).
const MAX_ROUNDS: usize = 8;

/// Summarizes `text`. `on_piece` receives the final summary's text as it is generated (UTF-8
/// safe pieces); `on_progress` hears about chunked work.
pub fn summarize(
    model: &Model,
    tokenizer: &Tokenizer,
    text: &str,
    opts: &SummarizeOptions,
    on_piece: &mut dyn FnMut(&str) -> Flow,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    if text.trim().is_empty() {
        return Err(Error::invalid("nothing to summarize: the input is empty"));
    }
    let prompt = Prompt::new(model, tokenizer, opts)?;
    let overhead = prompt.build("")?.len();
    if overhead + 16 > opts.max_input_tokens {
        return Err(Error::invalid(format!(
            "--max-input-tokens {} leaves no room for text after the {overhead}-token prompt",
            opts.max_input_tokens
        )));
    }
    let budget = opts.max_input_tokens - overhead;
    let mut gen_opts = opts.generate.clone();
    if !opts.max_new_tokens_set {
        gen_opts.max_new_tokens = opts.length.max_new_tokens();
    }
    let input_tokens = tokenizer.encode(text, EncodeOptions::default()).len();
    let mut current = text.to_string();
    let mut timing = (Duration::ZERO, Duration::ZERO);
    let mut first_round_chunks = 1;
    for round in 1..=MAX_ROUNDS {
        let chunks = split_into_chunks(tokenizer, &current, budget);
        if round == 1 {
            first_round_chunks = chunks.len();
        }
        if chunks.len() == 1 {
            let ids = prompt.build(&chunks[0])?;
            let (out, generation) = run(model, tokenizer, &ids, &gen_opts, &opts.stop_strings, on_piece)?;
            timing.0 += generation.encode_time;
            timing.1 += generation.decode_time;
            return Ok(Summary {
                text: out.trim().to_string(),
                input_tokens,
                output_tokens: generation.ids.len(),
                chunks: first_round_chunks,
                rounds: round,
                stop: generation.stop,
                encode_seconds: timing.0.as_secs_f64(),
                decode_seconds: timing.1.as_secs_f64(),
            });
        }
        let mut summaries = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            on_progress(Progress { round, done: i, total: chunks.len() });
            let ids = prompt.build(chunk)?;
            let (out, generation) = run(model, tokenizer, &ids, &gen_opts, &opts.stop_strings, &mut |_| Flow::Continue)?;
            timing.0 += generation.encode_time;
            timing.1 += generation.decode_time;
            summaries.push(out.trim().to_string());
        }
        on_progress(Progress { round, done: chunks.len(), total: chunks.len() });
        current = summaries.join("\n\n");
    }
    Err(Error::invalid(format!(
        "the document did not shrink to one chunk in {MAX_ROUNDS} rounds; raise --max-input-tokens"
    )))
}

/// Generates for one prompt, decoding text as it goes and honouring stop strings.
fn run(
    model: &Model,
    tokenizer: &Tokenizer,
    ids: &[u32],
    opts: &GenerateOptions,
    stop_strings: &[String],
    on_piece: &mut dyn FnMut(&str) -> Flow,
) -> Result<(String, Generation)> {
    let mut decoder = tokenizer.stream_decoder(DecodeOptions::default());
    let mut stream = StopStringFilter::new(stop_strings);
    let mut failure = None;
    let mut on_token = |id: u32| -> Flow {
        match decoder.push(id) {
            Ok(piece) => stream.push(&piece, on_piece),
            Err(e) => {
                failure = Some(e);
                Flow::Stop
            }
        }
    };
    let mut generation = generate::generate(model, ids, opts, &mut on_token)?;
    if let Some(e) = failure {
        return Err(e);
    }
    let stopped_by_string = stream.stopped;
    if !stopped_by_string {
        let tail = decoder.finish();
        stream.push(&tail, on_piece);
    }
    stream.finish(on_piece);
    if stream.stopped {
        generation.stop = StopReason::Callback;
    }
    Ok((stream.text, generation))
}

/// Streams text while holding back anything that could still become a stop string.
struct StopStringFilter<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
    stopped: bool,
}

impl<'a> StopStringFilter<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopStringFilter { stops, text: String::new(), emitted: 0, stopped: false }
    }

    fn push(&mut self, piece: &str, sink: &mut dyn FnMut(&str) -> Flow) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        self.text.push_str(piece);
        if let Some(at) = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(at);
            self.stopped = true;
            self.flush_to(self.text.len(), sink);
            return Flow::Stop;
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let hold = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|prefix| self.text.ends_with(prefix))
            .map(|p| p.len())
            .max()
            .unwrap_or(0);
        self.flush_to(self.text.len() - hold, sink)
    }

    fn flush_to(&mut self, end: usize, sink: &mut dyn FnMut(&str) -> Flow) -> Flow {
        if end <= self.emitted {
            return Flow::Continue;
        }
        let flow = sink(&self.text[self.emitted..end]);
        self.emitted = end;
        flow
    }

    fn finish(&mut self, sink: &mut dyn FnMut(&str) -> Flow) {
        let end = self.text.len();
        self.flush_to(end, sink);
    }
}

/// Builds encoder inputs around a piece of document text.
struct Prompt<'a> {
    tokenizer: &'a Tokenizer,
    /// Template parts before and after the document (control tokens recognized), or none for
    /// the plain prompt.
    parts: (String, String),
    special: bool,
    add_bos: bool,
}

/// Marks where the document goes when rendering a chat template.
const SLOT: &str = "\u{E000}t5g-document\u{E000}";

impl<'a> Prompt<'a> {
    fn new(model: &Model, tokenizer: &'a Tokenizer, opts: &SummarizeOptions) -> Result<Self> {
        let instruction = format!("Summarize the following text {}.", opts.length.phrase());
        let file = model.file();
        let (rendered, special, add_bos) = if let Some(template) = &opts.prompt_template {
            if !template.contains("{text}") {
                return Err(Error::invalid("--prompt-template must contain {text}"));
            }
            (template.replace("{instruction}", &instruction).replace("{text}", SLOT), true, tokenizer.add_bos_token())
        } else if let Some(chat) = file.opt_str("tokenizer.chat_template")? {
            let content = format!("{instruction}\n\n{SLOT}");
            (render_chat_template(chat, tokenizer, &content)?, true, false)
        } else {
            (format!("{instruction}\n\n{SLOT}\n\nSummary:"), false, tokenizer.add_bos_token())
        };
        let (before, after) = rendered
            .split_once(SLOT)
            .ok_or_else(|| Error::invalid("the prompt template dropped the document"))?;
        Ok(Prompt { tokenizer, parts: (before.to_string(), after.to_string()), special, add_bos })
    }

    /// Encoder ids: template text with control tokens recognized, the document without (so a
    /// document that contains `<start_of_turn>` cannot forge a turn).
    fn build(&self, document: &str) -> Result<Vec<u32>> {
        let tok = self.tokenizer;
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(tok.bos());
        }
        let template = EncodeOptions { special: self.special, ..Default::default() };
        ids.extend(tok.encode(&self.parts.0, template));
        ids.extend(tok.encode(document, EncodeOptions::default()));
        ids.extend(tok.encode(&self.parts.1, template));
        if ids.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        Ok(ids)
    }
}

fn render_chat_template(template: &str, tokenizer: &Tokenizer, content: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    let bad = |e: minijinja::Error| Error::metadata("tokenizer.chat_template", e.to_string());
    env.add_template("chat", template).map_err(bad)?;
    let piece = |id: Option<u32>| id.and_then(|i| tokenizer.token_piece(i)).unwrap_or("").to_string();
    env.get_template("chat")
        .map_err(bad)?
        .render(minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => content }],
            add_generation_prompt => true,
            bos_token => piece(tokenizer.bos()),
            eos_token => piece(tokenizer.eos()),
        })
        .map_err(bad)
}

/// Cuts text into chunks of at most `budget` tokens, at paragraph boundaries where possible,
/// then sentence boundaries, then anywhere.
pub fn split_into_chunks(tokenizer: &Tokenizer, text: &str, budget: usize) -> Vec<String> {
    let count = |s: &str| tokenizer.encode(s, EncodeOptions::default()).len();
    if count(text) <= budget {
        return vec![text.to_string()];
    }
    let mut pieces: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        if count(paragraph) <= budget {
            pieces.push(paragraph.to_string());
            continue;
        }
        for sentence in split_sentences(paragraph) {
            if count(sentence) <= budget {
                pieces.push(sentence.to_string());
            } else {
                pieces.extend(split_by_tokens(tokenizer, sentence, budget));
            }
        }
    }
    let mut chunks = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        let candidate = if current.is_empty() { piece.clone() } else { format!("{current}\n\n{piece}") };
        if !current.is_empty() && count(&candidate) > budget {
            chunks.push(std::mem::replace(&mut current, piece));
        } else {
            current = candidate;
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Sentences end at `.`, `!`, `?` (and their CJK forms) followed by whitespace or the end.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end_mark = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if end_mark && next_is_space {
            let end = i + c.len_utf8();
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// Last resort for a sentence longer than the budget: cut it every `budget` tokens.
fn split_by_tokens(tokenizer: &Tokenizer, text: &str, budget: usize) -> Vec<String> {
    let ids = tokenizer.encode(text, EncodeOptions::default());
    ids.chunks(budget.max(1))
        .map(|chunk| tokenizer.decode(chunk, DecodeOptions::default()).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_terminal_punctuation() {
        assert_eq!(split_sentences("A b. C d? E 3.5 f! G"), vec!["A b.", " C d?", " E 3.5 f!", " G"]);
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let stops = vec!["END".to_string()];
        let mut filter = StopStringFilter::new(&stops);
        let mut out = String::new();
        let mut sink = |s: &str| {
            out.push_str(s);
            Flow::Continue
        };
        assert_eq!(filter.push("hello E", &mut sink), Flow::Continue);
        assert_eq!(filter.push("N", &mut sink), Flow::Continue);
        assert_eq!(filter.push("D more", &mut sink), Flow::Stop);
        filter.finish(&mut sink);
        assert_eq!(out, "hello ");
        assert_eq!(filter.text, "hello ");
    }
}

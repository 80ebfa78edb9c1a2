//! The C ABI (`libt5g.so` / `.dylib` / `.dll`, header `include/t5g.h`).
//!
//! Every function may be called from several threads on one model. Errors come back as
//! messages in `*error` (when `error` is not NULL; free them with [`t5g_string_free`]), never
//! as aborts: each entry point catches panics and turns them into an error. This is the one
//! module besides the kernels and the mmap layer that needs `unsafe`: it is the boundary where
//! C pointers become Rust references, and each conversion states what it relies on.

use crate::generate::{Flow, GenerateOptions};
use crate::model::Model;
use crate::summarize::SummarizeOptions;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An opaque loaded model, shared by any number of threads.
pub struct t5g_model {
    model: Model,
}

/// Most tokens one call may generate.
const MAX_NEW_TOKENS: i32 = 1 << 16;

/// Stores `msg` in `*error` if the caller asked for messages.
fn set_error(error: *mut *mut c_char, msg: &str) {
    if error.is_null() {
        return;
    }
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the caller passes either NULL (checked above) or a valid `char **`.
    unsafe { *error = c.into_raw() };
}

fn clear_error(error: *mut *mut c_char) {
    if !error.is_null() {
        // SAFETY: as in `set_error`.
        unsafe { *error = std::ptr::null_mut() };
    }
}

/// Runs `f`, turning both errors and panics into a message and `fallback`.
fn guarded<T>(error: *mut *mut c_char, fallback: T, f: impl FnOnce() -> Result<T, String>) -> T {
    clear_error(error);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => {
            set_error(error, &msg);
            fallback
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            set_error(error, &format!("internal error: {what}"));
            fallback
        }
    }
}

/// Borrows a C string argument.
fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-NULL, and the C contract is a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// Borrows the model argument.
fn model_ref<'a>(model: *const t5g_model) -> Result<&'a Model, String> {
    if model.is_null() {
        return Err("model is NULL".into());
    }
    // SAFETY: non-NULL pointers come from `t5g_model_load` and stay valid until
    // `t5g_model_free`, which the caller must not race with other calls on the same model.
    Ok(unsafe { &(*model).model })
}

fn check_max_new(max_new_tokens: i32) -> Result<usize, String> {
    if max_new_tokens <= 0 || max_new_tokens > MAX_NEW_TOKENS {
        return Err(format!(
            "max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}"
        ));
    }
    Ok(max_new_tokens as usize)
}

/// Loads a model file. Returns NULL on failure with `*error` set.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `error` is NULL or points to a writable `char *`.
#[no_mangle]
pub unsafe extern "C" fn t5g_model_load(
    path: *const c_char,
    error: *mut *mut c_char,
) -> *mut t5g_model {
    guarded(error, std::ptr::null_mut(), || {
        let path = c_str(path, "path")?;
        let model = Model::load(path).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(t5g_model { model })))
    })
}

/// Frees a model (NULL is ignored). No other call may use it concurrently or afterwards.
///
/// # Safety
/// `model` is NULL or a pointer from `t5g_model_load` not yet freed, and no other call is using it.
#[no_mangle]
pub unsafe extern "C" fn t5g_model_free(model: *mut t5g_model) {
    if !model.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `t5g_model_load` and is freed once.
        drop(unsafe { Box::from_raw(model) });
    }
}

/// Greedy generation from token ids. Writes at most `max_new_tokens` ids to `out_ids` and
/// returns how many, or -1 with `*error` set.
///
/// # Safety
/// `model` comes from `t5g_model_load`; `input_ids` points to `n_input` ids; `out_ids` has room for `max_new_tokens` ids; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn t5g_generate_ids(
    model: *const t5g_model,
    input_ids: *const i32,
    n_input: usize,
    max_new_tokens: i32,
    out_ids: *mut i32,
    error: *mut *mut c_char,
) -> i32 {
    guarded(error, -1, || {
        let model = model_ref(model)?;
        let max_new = check_max_new(max_new_tokens)?;
        if input_ids.is_null() || n_input == 0 {
            return Err("input_ids is NULL or empty".into());
        }
        if out_ids.is_null() {
            return Err("out_ids is NULL".into());
        }
        // SAFETY: the caller promises `n_input` readable ids at `input_ids` (non-NULL, checked).
        let raw = unsafe { std::slice::from_raw_parts(input_ids, n_input) };
        let ids = raw
            .iter()
            .map(|&id| u32::try_from(id).map_err(|_| format!("token id {id} is out of range")))
            .collect::<Result<Vec<u32>, String>>()?;
        let opts = GenerateOptions {
            max_new_tokens: max_new,
            ..Default::default()
        };
        let out = model
            .session()
            .generate_ids(&ids, &opts, |_| Flow::Continue)
            .map_err(|e| e.to_string())?;
        // SAFETY: the caller promises room for `max_new_tokens` ids; we write at most that many.
        let dst = unsafe { std::slice::from_raw_parts_mut(out_ids, max_new) };
        for (d, &id) in dst.iter_mut().zip(&out.ids) {
            *d = id as i32;
        }
        Ok(out.ids.len() as i32)
    })
}

fn summary_options(max_new_tokens: i32) -> Result<SummarizeOptions, String> {
    let mut opts = SummarizeOptions::default();
    if max_new_tokens > 0 {
        opts.generate.max_new_tokens = check_max_new(max_new_tokens)?;
        opts.max_new_tokens_set = true;
    }
    Ok(opts)
}

/// Summarizes UTF-8 text. `max_new_tokens` <= 0 uses the default length. Returns a string to
/// free with `t5g_string_free`, or NULL with `*error` set.
///
/// # Safety
/// `model` comes from `t5g_model_load`; `text` is a NUL-terminated string; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn t5g_summarize(
    model: *const t5g_model,
    text: *const c_char,
    max_new_tokens: i32,
    error: *mut *mut c_char,
) -> *mut c_char {
    guarded(error, std::ptr::null_mut(), || {
        let model = model_ref(model)?;
        let text = c_str(text, "text")?;
        let opts = summary_options(max_new_tokens)?;
        let summary = model
            .session()
            .summarize(text, &opts, |_| Flow::Continue, |_| {})
            .map_err(|e| e.to_string())?;
        Ok(CString::new(summary.text.replace('\0', " "))
            .unwrap_or_default()
            .into_raw())
    })
}

/// A streaming callback: receives each UTF-8 piece (NUL-terminated, valid during the call) and
/// the user pointer; returns 0 to continue, anything else to stop.
pub type t5g_piece_callback = Option<extern "C" fn(utf8: *const c_char, user: *mut c_void) -> i32>;

/// Summarizes UTF-8 text, calling `on_piece` with the summary as it is generated. Returns the
/// number of tokens generated, or -1 with `*error` set.
///
/// # Safety
/// as `t5g_summarize`; `on_piece` is a valid function pointer and `user` is whatever it expects.
#[no_mangle]
pub unsafe extern "C" fn t5g_summarize_stream(
    model: *const t5g_model,
    text: *const c_char,
    max_new_tokens: i32,
    on_piece: t5g_piece_callback,
    user: *mut c_void,
    error: *mut *mut c_char,
) -> i32 {
    guarded(error, -1, || {
        let model = model_ref(model)?;
        let text = c_str(text, "text")?;
        let callback = on_piece.ok_or("on_piece is NULL")?;
        let opts = summary_options(max_new_tokens)?;
        let summary = model
            .session()
            .summarize(
                text,
                &opts,
                |piece| {
                    let c = CString::new(piece.replace('\0', " ")).unwrap_or_default();
                    if callback(c.as_ptr(), user) == 0 {
                        Flow::Continue
                    } else {
                        Flow::Stop
                    }
                },
                |_| {},
            )
            .map_err(|e| e.to_string())?;
        Ok(summary.output_tokens as i32)
    })
}

/// Frees a string returned by this library (NULL is ignored).
///
/// # Safety
/// `s` is NULL or a string returned by this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn t5g_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string we return comes from `CString::into_raw` and is freed once.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// The library version, a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn t5g_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

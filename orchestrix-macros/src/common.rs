//! Pieces shared by the three macros: key/value arguments, the crate path,
//! names and return types.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitInt, LitStr, Token};

use crate::ctxt::Ctxt;

/// One argument of a macro: remembers where it was set and rejects a
/// second occurrence, so no macro hand-copies duplicate checks.
pub(crate) struct Slot<T> {
    key: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Slot<T> {
    pub(crate) const fn new(key: &'static str) -> Self {
        Self { key, value: None }
    }

    /// Stores `value` set by the key at `span`, or records a duplicate.
    pub(crate) fn set(&mut self, cx: &mut Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            cx.error_at(span, format_args!("duplicate key `{}`: remove one of them", self.key));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn take(&mut self) -> Option<(Span, T)> {
        self.value.take()
    }

    pub(crate) fn value_ref(&self) -> Option<&(Span, T)> {
        self.value.as_ref()
    }
}

/// Parses `key = value, key = value` with `each` parsing one pair; a
/// trailing comma is fine.
pub(crate) fn parse_pairs(
    input: ParseStream<'_>,
    mut each: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        each(input)?;
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// Handles a key no table knows: records an error listing the valid keys
/// and skips its value, so the keys after it are still checked. Returns
/// `lookahead_error` when the input does not even start with a key.
pub(crate) fn unknown_key(
    cx: &mut Ctxt,
    input: ParseStream<'_>,
    valid: &[&str],
    lookahead_error: syn::Error,
) -> syn::Result<()> {
    if !input.peek(Ident::peek_any) {
        return Err(lookahead_error);
    }
    let key = input.call(Ident::parse_any)?;
    cx.error_spanned_by(&key, format_args!("unknown key `{key}`: the valid keys are {}", list(valid)));
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// `a`, `a` and `b`, `a`, `b` and `c`: keys in backticks.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Parses the value of `key = value` after the key.
pub(crate) fn value<T: Parse>(input: ParseStream<'_>) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// Parses `crate = "path"` after the key.
pub(crate) fn crate_path(input: ParseStream<'_>) -> syn::Result<syn::Path> {
    let lit: LitStr = value(input)?;
    lit.parse_with(syn::Path::parse_mod_style)
        .map_err(|_| syn::Error::new(lit.span(), "`crate` must be a path such as `crate = \"::my_orchestrix\"`"))
}

/// The path of the runtime crate in generated code: `::orchestrix` unless
/// overridden with `crate = "..."`.
pub(crate) fn krate(path: Option<syn::Path>) -> TokenStream {
    path.map_or_else(|| quote!(::orchestrix), ToTokens::into_token_stream)
}

/// Parses an integer key's value that must be at least 1.
pub(crate) fn positive<N>(cx: &mut Ctxt, lit: &LitInt, key: &str, hint: &str) -> Option<N>
where
    N: std::str::FromStr + Default + PartialEq,
    N::Err: std::fmt::Display,
{
    match lit.base10_parse::<N>() {
        Ok(n) if n == N::default() => {
            cx.error_spanned_by(lit, format_args!("`{key}` must be 1 or more: {hint}"));
            None
        }
        Ok(n) => Some(n),
        Err(error) => {
            cx.error_spanned_by(lit, format_args!("`{key}` must be a positive integer: {error}"));
            None
        }
    }
}

/// The longest stored name, in bytes: `orchestrix::event::MAX_EVENT_TYPE_LEN`,
/// which every store enforces (a unit test keeps the two equal).
pub(crate) const MAX_NAME_LEN: usize = 10 * 1024;

/// Validates a stored name (an event type or an aggregate) as
/// `orchestrix::event::validate_event_type` will: non-empty, at most
/// [`MAX_NAME_LEN`] bytes, without NUL; and, stricter, without whitespace
/// or other control characters.
pub(crate) fn check_name(cx: &mut Ctxt, lit: &LitStr, what: &str) -> String {
    let name = lit.value();
    if name.len() > MAX_NAME_LEN {
        cx.error_spanned_by(
            lit,
            format_args!(
                "{what} name is {} bytes long, and stores accept at most {MAX_NAME_LEN}: shorten it",
                name.len()
            ),
        );
    } else if name.is_empty() {
        cx.error_spanned_by(
            lit,
            format_args!("{what} name cannot be empty: write a name such as `name = \"AccountOpened\"`"),
        );
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        cx.error_spanned_by(
            lit,
            format_args!(
                "{what} name `{}` contains whitespace or control characters: remove them",
                name.escape_default()
            ),
        );
    }
    name
}

/// The last path segment of a type such as `a::b::Open<T>`, if it is a
/// path type.
pub(crate) fn last_segment(ty: &syn::Type) -> Option<&syn::PathSegment> {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        syn::Type::Group(group) => last_segment(&group.elem),
        syn::Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// The generic type arguments of a path segment: `[A, B]` for `Result<A, B>`.
pub(crate) fn type_args(segment: &syn::PathSegment) -> Vec<&syn::Type> {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Splits `Result<T, E>` into `(T, E)`, syntactically.
pub(crate) fn split_result(ty: &syn::Type) -> Option<(&syn::Type, &syn::Type)> {
    let segment = last_segment(ty)?;
    if segment.ident != "Result" {
        return None;
    }
    match type_args(segment)[..] {
        [ok, err] => Some((ok, err)),
        _ => None,
    }
}

/// Removes the attributes named `name` from `attrs`, returning them.
pub(crate) fn take_attrs(attrs: &mut Vec<syn::Attribute>, name: &str) -> Vec<syn::Attribute> {
    let (taken, kept) = std::mem::take(attrs).into_iter().partition(|attr| attr.path().is_ident(name));
    *attrs = kept;
    taken
}

/// Gives every token of `tokens` the span `span`, so that a type error in
/// generated code is reported at the user's tokens and nowhere else.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keys_in_prose() {
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b"]), "`a` and `b`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }

    #[test]
    fn names_are_limited_as_stores_limit_them() {
        assert_eq!(MAX_NAME_LEN, orchestrix::event::MAX_EVENT_TYPE_LEN);
        let check = |name: &str| {
            let mut cx = Ctxt::new();
            check_name(&mut cx, &LitStr::new(name, Span::call_site()), "an event type");
            cx.check().err().map(|e| e.to_string())
        };
        assert_eq!(check("AccountOpened"), None);
        assert_eq!(check(&"x".repeat(MAX_NAME_LEN)), None);
        assert!(check(&"x".repeat(MAX_NAME_LEN + 1)).unwrap().contains("stores accept at most 10240"));
        assert!(check("").unwrap().contains("cannot be empty"));
        assert!(check("a\0b").unwrap().contains("control characters"));
    }

    #[test]
    fn splits_results_syntactically() {
        let ty: syn::Type = syn::parse_quote!(::core::result::Result<Vec<E>, Error>);
        let (ok, err) = split_result(&ty).unwrap();
        assert_eq!(quote!(#ok).to_string(), "Vec < E >");
        assert_eq!(quote!(#err).to_string(), "Error");
        assert!(split_result(&syn::parse_quote!(Option<E>)).is_none());
        assert!(split_result(&syn::parse_quote!(Result<E>)).is_none());
    }
}

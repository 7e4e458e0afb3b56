//! The arguments of `#[event(...)]`, on the type and on a variant.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{LitInt, LitStr, Token};

use crate::common::{self, Slot};
use crate::ctxt::Ctxt;

/// The keyword table: every key `#[event]` knows.
pub(crate) mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(version);
    syn::custom_keyword!(upcast);
    syn::custom_keyword!(schema);
}

pub(crate) const VALID_KEYS: &[&str] = &["name", "version", "upcast", "crate", "schema"];

/// The arguments as written, each with the span of its key.
pub(crate) struct EventArgs {
    pub(crate) name: Slot<LitStr>,
    pub(crate) version: Slot<LitInt>,
    pub(crate) upcast: Slot<Vec<syn::Path>>,
    pub(crate) krate: Slot<syn::Path>,
    /// `schema`: also implement `EventSchemas` (a flag, no value).
    pub(crate) schema: Slot<()>,
}

impl EventArgs {
    pub(crate) const fn new() -> Self {
        Self {
            name: Slot::new("name"),
            version: Slot::new("version"),
            upcast: Slot::new("upcast"),
            krate: Slot::new("crate"),
            schema: Slot::new("schema"),
        }
    }

    /// Parses `tokens` into `self`, recording every error in `cx`.
    pub(crate) fn parse_into(&mut self, cx: &mut Ctxt, tokens: TokenStream) {
        let parser = |input: ParseStream<'_>| common::parse_pairs(input, |input| self.parse_pair(cx, input));
        if let Err(error) = parser.parse2(tokens) {
            cx.push(error);
        }
    }

    fn parse_pair(&mut self, cx: &mut Ctxt, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::name) {
            let key: kw::name = input.parse()?;
            self.name.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::version) {
            let key: kw::version = input.parse()?;
            self.version.set(cx, key.span, common::value(input)?);
        } else if lookahead.peek(kw::upcast) {
            let key: kw::upcast = input.parse()?;
            input.parse::<Token![=]>()?;
            let content;
            syn::bracketed!(content in input);
            let paths = Punctuated::<syn::Path, Token![,]>::parse_terminated(&content)?;
            self.upcast.set(cx, key.span, paths.into_iter().collect());
        } else if lookahead.peek(kw::schema) {
            let key: kw::schema = input.parse()?;
            if input.peek(Token![=]) {
                return Err(syn::Error::new(
                    key.span,
                    "`schema` takes no value: write `#[event(schema)]` to derive the JSON schemas of the stored types",
                ));
            }
            self.schema.set(cx, key.span, ());
        } else if lookahead.peek(Token![crate]) {
            let key: Token![crate] = input.parse()?;
            self.krate.set(cx, key.span, common::crate_path(input)?);
        } else {
            return common::unknown_key(cx, input, VALID_KEYS, lookahead.error());
        }
        Ok(())
    }
}

/// The validated version and upcasters of one stored type.
pub(crate) struct Versioning {
    pub(crate) version: u32,
    pub(crate) upcasters: Vec<syn::Path>,
}

impl EventArgs {
    /// Validates `version` and `upcast` together: a version `n` needs
    /// exactly `n - 1` upcasters, so every stored version stays readable.
    /// `at` is where to report an error when the keys are absent.
    pub(crate) fn versioning(&mut self, cx: &mut Ctxt) -> Versioning {
        let version_lit = self.version.take();
        let upcast = self.upcast.take();
        let version = match &version_lit {
            None => 1,
            Some((_, lit)) => {
                common::positive::<u32>(cx, lit, "version", "the first schema of an event is `version = 1`")
                    .unwrap_or(1)
            }
        };
        let needed = (version - 1) as usize;
        match (upcast, version_lit) {
            (None, Some((_, lit))) if needed > 0 => {
                let names: Vec<String> = (1..version).map(|v| format!("v{v}_to_v{}", v + 1)).collect();
                cx.error_spanned_by(
                    lit,
                    format_args!(
                        "version {version} needs {} ({}) so that older stored events stay readable: add `upcast = [{}]`",
                        upcasters(needed),
                        from_list(version),
                        names.join(", ")
                    ),
                );
                Versioning { version, upcasters: Vec::new() }
            }
            (Some((span, paths)), _) if paths.len() != needed => {
                let found = paths.len();
                if needed == 0 {
                    cx.error_at(
                        span,
                        format_args!(
                            "version {version} needs no upcasters, found {found}: remove `upcast` or raise `version` to {}",
                            found + 1
                        ),
                    );
                } else {
                    cx.error_at(
                        span,
                        format_args!(
                            "version {version} needs {} ({}), found {found}: `upcast[i]` converts version i + 1 to i + 2",
                            upcasters(needed),
                            from_list(version)
                        ),
                    );
                }
                Versioning { version, upcasters: Vec::new() }
            }
            (upcast, _) => Versioning { version, upcasters: upcast.map(|(_, paths)| paths).unwrap_or_default() },
        }
    }

    /// Reports every key that is set but not allowed at this place.
    pub(crate) fn reject(&mut self, cx: &mut Ctxt, keys: &[&str], hint: &str) {
        let at = |cx: &mut Ctxt, key: &str, span: Option<Span>| {
            if let Some(span) = span {
                cx.error_at(span, format_args!("`{key}` is not allowed here: {hint}"));
            }
        };
        for key in keys {
            match *key {
                "name" => at(cx, key, self.name.take().map(|(s, _)| s)),
                "version" => at(cx, key, self.version.take().map(|(s, _)| s)),
                "upcast" => at(cx, key, self.upcast.take().map(|(s, _)| s)),
                "crate" => at(cx, key, self.krate.take().map(|(s, _)| s)),
                "schema" => at(cx, key, self.schema.take().map(|(s, ())| s)),
                _ => unreachable!("not a key of #[event]: {key}"),
            }
        }
    }
}

fn upcasters(n: usize) -> String {
    if n == 1 {
        "1 upcaster".to_owned()
    } else {
        format!("{n} upcasters")
    }
}

/// `from v1 and from v2` for version 3.
fn from_list(version: u32) -> String {
    let froms: Vec<String> = (1..version).map(|v| format!("from v{v}")).collect();
    let froms: Vec<&str> = froms.iter().map(String::as_str).collect();
    common::list(&froms).replace('`', "")
}

//! Validates the item under `#[event]` into the model `expand` works from.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, Token, Type};

use super::attr::EventArgs;
use super::personal::{self, Personal, Tag};
use crate::common;
use crate::ctxt::Ctxt;

/// The fields of one stored type.
pub(crate) enum Shape {
    /// `{ a: A, b: B }`: a JSON object with these fields.
    Named(Vec<NamedField>),
    /// `(Inner)`: the inner value's own serialization.
    Newtype(Box<Type>),
    /// No fields: `{}`.
    Unit,
}

pub(crate) struct NamedField {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// The field's `#[serde(...)]` attributes, copied to the shadow structs.
    pub(crate) serde: Vec<Attribute>,
}

/// One stored event type.
pub(crate) struct Stored {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) upcasters: Vec<syn::Path>,
}

pub(crate) struct Variant {
    pub(crate) ident: Ident,
    pub(crate) shape: Shape,
    pub(crate) stored: Stored,
    /// The variant's `#[serde(...)]` attributes, copied to the shadow structs.
    pub(crate) serde: Vec<Attribute>,
    /// Its personal fields (`#[event(personal(subject = ...))]`).
    pub(crate) personal: Vec<Personal>,
    /// Its tag fields (`#[event(tag)]`).
    pub(crate) tags: Vec<Tag>,
}

pub(crate) enum Input {
    Enum {
        item: syn::ItemEnum,
        variants: Vec<Variant>,
    },
    Struct {
        item: syn::ItemStruct,
        stored: Stored,
        unit: bool,
        personal: Vec<Personal>,
        tags: Vec<Tag>,
    },
    /// Not something `#[event]` applies to: re-emitted as is.
    Other(TokenStream),
}

pub(crate) struct Model {
    pub(crate) krate: TokenStream,
    pub(crate) input: Input,
    /// False when the `Event` impl cannot even be stubbed (generic types).
    pub(crate) implementable: bool,
    /// Where `schema` was written, when the `EventSchemas` impl is asked for.
    pub(crate) schema: Option<Span>,
}

/// The default stored name's prefix for the variants of enum `ident`: its
/// name without a trailing `Event` or `Events` (`AccountEvent` → `Account`).
pub(crate) fn enum_prefix(ident: &str) -> &str {
    ident.strip_suffix("Events").or_else(|| ident.strip_suffix("Event")).unwrap_or(ident)
}

pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: syn::Item) -> Model {
    let mut args_ = EventArgs::new();
    args_.parse_into(cx, args);
    match item {
        syn::Item::Enum(item) => {
            args_.reject(
                cx,
                &["name", "version", "upcast"],
                "on an enum, put `#[event(name = ..., version = ..., upcast = [...])]` on the variant it is about",
            );
            let krate = common::krate(args_.krate.take().map(|(_, path)| path));
            let schema = args_.schema.take().map(|(span, ())| span);
            let implementable = check_generics(cx, &item.generics, &item.ident);
            let (item, variants) = parse_enum(cx, item);
            Model { krate, input: Input::Enum { item, variants }, implementable, schema }
        }
        syn::Item::Struct(mut item) => {
            if matches!(item.fields, Fields::Named(_)) {
                reject_serde_derives(cx, &item.attrs);
            }
            let krate = common::krate(args_.krate.take().map(|(_, path)| path));
            let schema = args_.schema.take().map(|(span, ())| span);
            let implementable = check_generics(cx, &item.generics, &item.ident);
            let stored = stored(cx, &mut args_, item.ident.to_string());
            let unit = match &item.fields {
                Fields::Named(_) => false,
                Fields::Unit => true,
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &item.fields,
                        format_args!(
                            "tuple structs cannot be events: name the fields, as in `struct {} {{ amount: u64 }}`",
                            item.ident
                        ),
                    );
                    false
                }
            };
            let container: Vec<Attribute> =
                item.attrs.iter().filter(|attr| attr.path().is_ident("serde")).cloned().collect();
            let attrs = match &mut item.fields {
                Fields::Named(fields) => {
                    personal::parse_fields(cx, fields.named.iter_mut(), &container.iter().collect::<Vec<_>>())
                }
                Fields::Unnamed(fields) => {
                    personal::reject_on_unnamed(cx, fields.unnamed.iter_mut());
                    personal::FieldAttrs::default()
                }
                Fields::Unit => personal::FieldAttrs::default(),
            };
            let personal::FieldAttrs { personal, tags } = attrs;
            Model { krate, input: Input::Struct { item, stored, unit, personal, tags }, implementable, schema }
        }
        other => {
            cx.error_spanned_by(
                item_keyword(&other),
                "`#[event]` applies to an enum (one stored type per variant) or a struct with named fields",
            );
            Model {
                krate: common::krate(None),
                input: Input::Other(other.into_token_stream()),
                implementable: false,
                schema: None,
            }
        }
    }
}

/// `#[event]` derives `Serialize` and `Deserialize` on a struct with named
/// fields: the user's own derive of either would be a second, conflicting
/// impl, reported without a word about `#[event]`. Say it here instead.
fn reject_serde_derives(cx: &mut Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        let Ok(paths) = attr.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated) else { continue };
        for path in &paths {
            let Some(last) = path.segments.last() else { continue };
            if last.ident == "Serialize" || last.ident == "Deserialize" {
                cx.error_spanned_by(
                    path,
                    format_args!(
                        "`#[event]` already derives `Serialize` and `Deserialize` for a struct event: remove `{}` from this `#[derive]`",
                        last.ident
                    ),
                );
            }
        }
    }
}

fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Union(item) => item.union_token.into_token_stream(),
        syn::Item::Fn(item) => item.sig.fn_token.into_token_stream(),
        syn::Item::Type(item) => item.type_token.into_token_stream(),
        syn::Item::Impl(item) => item.impl_token.into_token_stream(),
        other => other.into_token_stream(),
    }
}

fn check_generics(cx: &mut Ctxt, generics: &syn::Generics, ident: &Ident) -> bool {
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return true;
    }
    let span = if generics.params.is_empty() { generics.where_clause.span() } else { generics.params.span() };
    cx.error_at(
        span,
        format_args!("events cannot be generic: a stored event needs one concrete type per name; make `{ident}` concrete (use a separate event type per case)"),
    );
    false
}

/// The name, version and upcasters of one stored type.
fn stored(cx: &mut Ctxt, args: &mut EventArgs, default_name: String) -> Stored {
    let name = match args.name.take() {
        Some((_, lit)) => common::check_name(cx, &lit, "an event type"),
        None => default_name,
    };
    let versioning = args.versioning(cx);
    Stored { name, version: versioning.version, upcasters: versioning.upcasters }
}

fn parse_enum(cx: &mut Ctxt, mut item: syn::ItemEnum) -> (syn::ItemEnum, Vec<Variant>) {
    let enum_name = item.ident.to_string();
    let prefix = enum_prefix(&enum_name);
    let mut seen: HashMap<String, (Ident, Span)> = HashMap::new();
    let mut variants = Vec::new();
    for variant in &mut item.variants {
        let mut args = EventArgs::new();
        let mut name_span = variant.ident.span();
        for attr in common::take_attrs(&mut variant.attrs, "event") {
            match &attr.meta {
                syn::Meta::List(list) => args.parse_into(cx, list.tokens.clone()),
                other => cx.error_spanned_by(
                    other,
                    "write the variant's settings as `#[event(name = \"...\", version = 2, upcast = [v1_to_v2])]`",
                ),
            }
        }
        if let Some((_, lit)) = &args.name.value_ref() {
            name_span = lit.span();
        }
        args.reject(cx, &["crate"], "`crate` goes on the enum's `#[event]` attribute");
        args.reject(
            cx,
            &["schema"],
            "`schema` goes on the enum's `#[event]` attribute, where it derives the schemas of all variants",
        );
        let stored = stored(cx, &mut args, format!("{prefix}{}", variant.ident));
        let serde = common::take_attrs(&mut variant.attrs, "serde");
        let mut attrs = personal::FieldAttrs::default();
        let shape = match &mut variant.fields {
            Fields::Named(fields) => Shape::Named({
                attrs = personal::parse_fields(cx, fields.named.iter_mut(), &serde.iter().collect::<Vec<_>>());
                fields
                    .named
                    .iter_mut()
                    .map(|field| NamedField {
                        ident: field.ident.clone().expect("named fields have names"),
                        ty: field.ty.clone(),
                        serde: common::take_attrs(&mut field.attrs, "serde"),
                    })
                    .collect()
            }),
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                personal::reject_on_unnamed(cx, fields.unnamed.iter_mut());
                let field = fields.unnamed.first_mut().expect("one field");
                for attr in common::take_attrs(&mut field.attrs, "serde") {
                    cx.error_spanned_by(
                        attr,
                        "`#[serde]` attributes on a newtype variant's field have no effect: put them on the inner type",
                    );
                }
                Shape::Newtype(Box::new(field.ty.clone()))
            }
            Fields::Unnamed(fields) => {
                personal::reject_on_unnamed(cx, fields.unnamed.iter_mut());
                let types: Vec<String> =
                    fields.unnamed.iter().map(|f| f.ty.to_token_stream().to_string().replace(' ', "")).collect();
                cx.error_spanned_by(
                    &*fields,
                    format_args!(
                        "variant `{}` has {} unnamed fields ({}), which have no JSON names: name them, as in `{} {{ a: .., b: .. }}`, or wrap them in one struct",
                        variant.ident,
                        types.len(),
                        types.join(", "),
                        variant.ident
                    ),
                );
                Shape::Unit
            }
            Fields::Unit => Shape::Unit,
        };
        if let Some((first, _)) = seen.get(&stored.name) {
            cx.error_at(
                name_span,
                format_args!("event type name `{}` is already used by variant `{first}`: give one of them another `#[event(name = \"...\")]`", stored.name),
            );
        } else {
            seen.insert(stored.name.clone(), (variant.ident.clone(), name_span));
        }
        let personal::FieldAttrs { personal, tags } = attrs;
        variants.push(Variant { ident: variant.ident.clone(), shape, stored, serde, personal, tags });
    }
    (item, variants)
}

//! The field attributes of `#[event]`:
//!
//! - `#[event(personal(subject = field))]`: personal data, encrypted per
//!   data subject by the runtime's `CryptoStore`;
//! - `#[event(tag)]` or `#[event(tag = "name")]`: the field's value becomes
//!   the event's tag `name:value`, which queries select events by
//!   (consistency by query, ADR 0023).

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Ident, Token, Type};

use crate::common;
use crate::ctxt::Ctxt;

/// The keyword table of a field's `#[event(...)]`.
mod kw {
    syn::custom_keyword!(personal);
    syn::custom_keyword!(subject);
    syn::custom_keyword!(tag);
}

const FIELD_KEYS: &[&str] = &["personal", "tag"];
const PERSONAL_KEYS: &[&str] = &["subject"];

/// One validated personal field.
pub(crate) struct Personal {
    /// The field's name (also its JSON name: renaming is refused).
    pub(crate) field: String,
    /// The name of the field that identifies the data subject.
    pub(crate) subject: String,
    /// Where `personal` is written: the place of the error when the
    /// `crypto` feature is off.
    pub(crate) at: Span,
}

/// One validated tag field.
pub(crate) struct Tag {
    /// The field.
    pub(crate) field: Ident,
    /// Its type, which must implement `TagValue`.
    pub(crate) ty: Type,
    /// The tag's name: the part before the `:`.
    pub(crate) name: String,
}

/// What the field attributes of one variant or struct declare.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) personal: Vec<Personal>,
    pub(crate) tags: Vec<Tag>,
}

/// What one `#[event(...)]` on a field says, as written.
#[derive(Default)]
struct Found {
    personal: Option<(Span, Option<Ident>)>,
    tag: Option<(Span, Option<syn::LitStr>)>,
}

/// A field's `#[event(personal(...))]` as written.
struct Marked {
    field: Ident,
    ty: Type,
    at: Span,
    subject: Option<Ident>,
    serde: bool,
}

/// Takes every `#[event(...)]` off `fields`, validates the personal ones
/// against each other and the fields, and returns them. `container` holds
/// the `#[serde]` attributes of the variant or struct, which must not
/// rename fields when some are personal.
pub(crate) fn parse_fields<'a>(
    cx: &mut Ctxt,
    fields: impl Iterator<Item = &'a mut syn::Field>,
    container: &[&Attribute],
) -> FieldAttrs {
    let mut names: Vec<(Ident, bool)> = Vec::new();
    let mut marked: Vec<Marked> = Vec::new();
    let mut tags: Vec<(Tag, Span)> = Vec::new();
    for field in fields {
        let Some(ident) = field.ident.clone() else { continue };
        let serde = field.attrs.iter().any(|attr| attr.path().is_ident("serde"));
        names.push((ident.clone(), serde));
        for attr in common::take_attrs(&mut field.attrs, "event") {
            let syn::Meta::List(list) = &attr.meta else {
                cx.error_spanned_by(
                    &attr,
                    "write a field's settings as `#[event(tag)]`, `#[event(tag = \"name\")]` or `#[event(personal(subject = the_subject_field))]`",
                );
                continue;
            };
            let mut found = Found::default();
            let parser =
                |input: ParseStream<'_>| common::parse_pairs(input, |input| parse_field_key(cx, input, &mut found));
            if let Err(error) = parser.parse2(list.tokens.clone()) {
                cx.push(error);
            }
            if let Some((at, name)) = found.tag {
                let name = match name {
                    Some(given) => check_tag_name(cx, &given),
                    None => Some(ident.to_string()),
                };
                if let Some(name) = name {
                    if let Some((first, _)) = tags.iter().find(|(t, _)| t.name == name) {
                        cx.error_at(
                            at,
                            format_args!(
                                "duplicate tag name `{name}`: field `{}` already has it; give one of them another `#[event(tag = \"...\")]`",
                                first.field
                            ),
                        );
                    } else if tags.iter().any(|(t, _)| t.field == ident) {
                        cx.error_at(at, "duplicate `tag`: mark the field once");
                    } else {
                        tags.push((Tag { field: ident.clone(), ty: field.ty.clone(), name }, at));
                    }
                }
            }
            if let Some((at, subject)) = found.personal {
                if marked.iter().any(|m| m.field == ident) {
                    cx.error_at(at, "duplicate `personal`: mark the field once");
                    continue;
                }
                marked.push(Marked { field: ident.clone(), ty: field.ty.clone(), at, subject, serde });
            }
        }
    }
    FieldAttrs { personal: validate(cx, &names, &marked, container), tags: tags.into_iter().map(|(t, _)| t).collect() }
}

/// A tag name: not empty, without `:` (which separates it from the value)
/// or whitespace.
fn check_tag_name(cx: &mut Ctxt, lit: &syn::LitStr) -> Option<String> {
    let name = lit.value();
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) || name.contains('\0') {
        cx.error_spanned_by(
            lit,
            format_args!("invalid tag name {name:?}: write a non-empty name without `:` or whitespace, as in `#[event(tag = \"course\")]`"),
        );
        return None;
    }
    Some(name)
}

/// Checks the marked fields against each other, the field names and the
/// container's `#[serde]` attributes.
fn validate(cx: &mut Ctxt, names: &[(Ident, bool)], marked: &[Marked], container: &[&Attribute]) -> Vec<Personal> {
    let mut personal = Vec::new();
    for m in marked {
        if m.serde {
            cx.error_at(
                m.at,
                format_args!(
                    "personal field `{}` cannot carry `#[serde(...)]` attributes: the store finds personal fields by their Rust names",
                    m.field
                ),
            );
        }
        if !is_option(&m.ty) {
            cx.error_spanned_by(
                &m.ty,
                format_args!(
                    "personal field `{}` must be an `Option<_>`: once its subject's key is deleted it reads back as `None`; write `{}: Option<{}>`",
                    m.field,
                    m.field,
                    m.ty.to_token_stream().to_string().replace(' ', "")
                ),
            );
        }
        let Some(subject) = &m.subject else {
            cx.error_at(
                m.at,
                format_args!("personal field `{}` needs its data subject: `personal(subject = the_id_field)`", m.field),
            );
            continue;
        };
        let others: Vec<String> = names.iter().filter(|(n, _)| n != &m.field).map(|(n, _)| n.to_string()).collect();
        let Some((_, subject_serde)) = names.iter().find(|(n, _)| n == subject) else {
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let hint = if others.is_empty() {
                "add a field that identifies the person".to_owned()
            } else {
                common::list(&others)
            };
            cx.error_spanned_by(
                subject,
                format_args!(
                    "no field `{subject}` here: `subject` names the field that identifies the data subject ({hint})"
                ),
            );
            continue;
        };
        if subject == &m.field {
            cx.error_spanned_by(
                subject,
                format_args!(
                    "personal field `{}` cannot be its own subject: name the field that identifies the person",
                    m.field
                ),
            );
            continue;
        }
        if marked.iter().any(|other| &other.field == subject) {
            cx.error_spanned_by(
                subject,
                format_args!(
                    "the subject `{subject}` is itself personal: a subject id must stay readable to find its key"
                ),
            );
            continue;
        }
        if *subject_serde {
            cx.error_spanned_by(
                subject,
                format_args!("the subject field `{subject}` cannot carry `#[serde(...)]` attributes: the store finds it by its Rust name"),
            );
        }
        personal.push(Personal { field: m.field.to_string(), subject: subject.to_string(), at: m.at });
    }
    if !marked.is_empty() {
        for attr in container {
            if attr.to_token_stream().to_string().contains("rename_all") {
                cx.error_spanned_by(
                    attr,
                    "`rename_all` cannot be used beside personal fields: the store finds personal fields by their Rust names",
                );
            }
        }
    }
    personal
}

/// Parses `personal(subject = x)`, `tag` or `tag = "name"`, or reports an
/// unknown key.
fn parse_field_key(cx: &mut Ctxt, input: ParseStream<'_>, found: &mut Found) -> syn::Result<()> {
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::tag) {
        let key: kw::tag = input.parse()?;
        let name = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let lookahead = input.lookahead1();
            if !lookahead.peek(syn::LitStr) {
                return Err(syn::Error::new(
                    input.span(),
                    "expected the tag's name as a string: `#[event(tag = \"course\")]`",
                ));
            }
            Some(input.parse::<syn::LitStr>()?)
        } else {
            None
        };
        if found.tag.is_some() {
            cx.error_at(key.span, "duplicate `tag`: mark the field once");
        } else {
            found.tag = Some((key.span, name));
        }
        return Ok(());
    }
    if !lookahead.peek(kw::personal) {
        return common::unknown_key(cx, input, FIELD_KEYS, lookahead.error());
    }
    let key: kw::personal = input.parse()?;
    let mut subject: Option<Ident> = None;
    if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        common::parse_pairs(&content, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::subject) {
                let key: kw::subject = input.parse()?;
                input.parse::<Token![=]>()?;
                let ident: Ident = input.parse()?;
                if subject.is_some() {
                    cx.error_at(key.span, "duplicate key `subject`: remove one of them");
                } else {
                    subject = Some(ident);
                }
                Ok(())
            } else {
                common::unknown_key(cx, input, PERSONAL_KEYS, lookahead.error())
            }
        })?;
    }
    if found.personal.is_some() {
        cx.error_at(key.span, "duplicate `personal`: mark the field once");
    } else {
        found.personal = Some((key.span, subject));
    }
    Ok(())
}

/// Whether `ty` is written as `Option<_>` (any path ending in `Option`).
fn is_option(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|segment| {
            segment.ident == "Option" && matches!(segment.arguments, syn::PathArguments::AngleBracketed(_))
        })
}

/// Reports `#[event(...)]` on fields that cannot be personal (those of
/// tuple variants), and removes it.
pub(crate) fn reject_on_unnamed<'a>(cx: &mut Ctxt, fields: impl Iterator<Item = &'a mut syn::Field>) {
    for field in fields {
        for attr in common::take_attrs(&mut field.attrs, "event") {
            cx.error_spanned_by(
                attr,
                "only named fields can be personal or tags: name the field, as in `Variant { course_id: String }`",
            );
        }
    }
}

/// The tokens of one stored type's `PersonalData`: an expression, behind
/// `if_crypto!` at the first `personal` key, so that without the `crypto`
/// feature of orchestrix (which encrypts these fields) the declaration is
/// one clear error there rather than personal data stored in clear.
pub(crate) fn personal_data(krate: &TokenStream, event_type: &str, fields: &[Personal]) -> TokenStream {
    let names = fields.iter().map(|p| &p.field);
    let subjects = fields.iter().map(|p| &p.subject);
    let at = fields.first().map_or_else(Span::call_site, |p| p.at);
    let data = quote::quote! {
        #krate::__private::PersonalData {
            event_type: #event_type,
            fields: &[#(#krate::__private::PersonalField { name: #names, subject: #subjects }),*],
        }
    };
    let guard = common::respan(quote::quote!(#krate::__private::if_crypto!), at);
    quote::quote_spanned!(at=> #guard { #data })
}

/// The body of `Event::tags` for one variant's or struct's tag fields,
/// each reached through `access(field)`; every value is checked to be a
/// `TagValue` at the field's type, so a wrong type is reported there.
pub(crate) fn tag_values(krate: &TokenStream, tags: &[Tag], access: impl Fn(&Ident) -> TokenStream) -> TokenStream {
    use syn::spanned::Spanned as _;
    let values = tags.iter().map(|tag| {
        let (name, ty, value) = (&tag.name, &tag.ty, access(&tag.field));
        // The check first, by qualified path at the same place: a wrong
        // type is reported without a note pointing into `query::tag`, and
        // the compiler drops the call's same error.
        quote::quote_spanned! {ty.span()=> {
            let _ = <#ty as #krate::__private::TagValue>::tag_value;
            #krate::__private::tag::<#ty>(#name, #value)
        }}
    });
    quote::quote! {{
        let mut __orchestrix_tags: #krate::__private::Vec<::std::string::String> = #krate::__private::Vec::new();
        #( __orchestrix_tags.push(#values); )*
        __orchestrix_tags.sort_unstable();
        __orchestrix_tags.dedup();
        __orchestrix_tags
    }}
}

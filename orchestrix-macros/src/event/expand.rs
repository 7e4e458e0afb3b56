//! Generates the `Event` impl and the shadow structs that serialize each
//! stored type without an enum tag.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::model::{Input, Model, Shape, Stored, Variant};

/// The whole expansion: the item, then its `Event` impl in a `const _`.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let krate = &model.krate;
    match &model.input {
        Input::Enum { item, variants } => {
            let mut body = enum_impl(krate, item, variants);
            if let Some(span) = model.schema {
                body.extend(enum_schemas(krate, span, item, variants));
            }
            quote! {
                #item
                const _: () = { #body };
            }
        }
        Input::Struct { item, stored, unit, personal, tags } => {
            let mut body = struct_impl(krate, item, stored, *unit, personal, tags);
            if let Some(span) = model.schema {
                body.extend(struct_schemas(krate, span, item, stored));
            }
            let mut item = item.clone();
            if !unit {
                let serde_crate = serde_crate(krate);
                item.attrs.push(syn::parse_quote!(#[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]));
                item.attrs.push(syn::parse_quote!(#[serde(crate = #serde_crate)]));
            }
            quote! {
                #item
                const _: () = { #body };
            }
        }
        Input::Other(tokens) => tokens.clone(),
    }
}

/// What is emitted when the input has errors: the item, plus an `Event`
/// impl that never runs, so that uses of the type raise no further errors.
pub(crate) fn fallback(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let (item, ident) = match &model.input {
        Input::Enum { item, .. } => (item.to_token_stream(), &item.ident),
        Input::Struct { item, .. } => (item.to_token_stream(), &item.ident),
        Input::Other(tokens) => return tokens.clone(),
    };
    if !model.implementable {
        return item;
    }
    quote! {
        #item
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                fn event_types() -> &'static [#krate::event::EventType] {
                    &[]
                }
                fn event_type(&self) -> &'static str {
                    ::core::unreachable!()
                }
                fn schema_version(&self) -> u32 {
                    ::core::unreachable!()
                }
                fn encode(&self) -> ::core::result::Result<#krate::__private::Box<#krate::__private::serde_json::value::RawValue>, #krate::__private::serde_json::Error> {
                    ::core::unreachable!()
                }
                fn decode(_: &str, _: u32, _: &#krate::__private::serde_json::value::RawValue) -> ::core::result::Result<Self, #krate::error::DecodeErrorKind> {
                    ::core::result::Result::Err(#krate::error::DecodeErrorKind::UnknownType)
                }
            }
        };
    }
}

/// `"::orchestrix::__private::serde"` as a string literal, for `#[serde(crate = ...)]`.
fn serde_crate(krate: &TokenStream) -> syn::LitStr {
    let path = quote!(#krate::__private::serde).to_string().replace(' ', "");
    syn::LitStr::new(&path, proc_macro2::Span::call_site())
}

fn event_type(krate: &TokenStream, stored: &Stored) -> TokenStream {
    let Stored { name, version, .. } = stored;
    quote!(#krate::event::EventType::new(#name, #version))
}

/// The upcaster chain, each checked against `Upcaster` at the user's path.
fn upcasters(krate: &TokenStream, stored: &Stored) -> TokenStream {
    let checked = stored.upcasters.iter().map(|path| {
        quote_spanned! {path.span()=>
            {
                let __orchestrix_upcaster: #krate::__private::Upcaster = #path;
                __orchestrix_upcaster
            }
        }
    });
    quote!(&[#(#checked),*])
}

/// The decode of one stored type into `T`: `decode_versioned::<T>(...)?`.
fn decode_data(krate: &TokenStream, stored: &Stored, ty: &TokenStream) -> TokenStream {
    let version = stored.version;
    let upcasters = upcasters(krate, stored);
    quote! {
        #krate::__private::decode_versioned::<#ty>(__orchestrix_data, __orchestrix_version, #version, #upcasters)?
    }
}

/// The `Event` impl's signatures around the given bodies.
struct Bodies {
    types: Vec<TokenStream>,
    event_type: TokenStream,
    schema_version: TokenStream,
    encode: TokenStream,
    decode: TokenStream,
    /// The `PersonalData` of the stored types that have personal fields.
    personal: Vec<TokenStream>,
    /// The body of `Event::tags`, if any field is a tag.
    tags: Option<TokenStream>,
}

fn event_impl(krate: &TokenStream, ident: &syn::Ident, bodies: Bodies) -> TokenStream {
    let Bodies { types, event_type, schema_version, encode, decode, personal, tags } = bodies;
    let tags = tags.map(|body| {
        quote! {
            fn tags(&self) -> #krate::__private::Vec<::std::string::String> {
                #body
            }
        }
    });
    let personal = if personal.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            fn personal_data() -> &'static [#krate::__private::PersonalData] {
                const __ORCHESTRIX_PERSONAL: &[#krate::__private::PersonalData] = &[#(#personal),*];
                __ORCHESTRIX_PERSONAL
            }
        }
    };
    quote! {
        #[automatically_derived]
        impl #krate::Event for #ident {
            fn event_types() -> &'static [#krate::event::EventType] {
                const __ORCHESTRIX_TYPES: &[#krate::event::EventType] = &[#(#types),*];
                __ORCHESTRIX_TYPES
            }

            fn event_type(&self) -> &'static str {
                #event_type
            }

            fn schema_version(&self) -> u32 {
                #schema_version
            }

            fn encode(&self) -> ::core::result::Result<#krate::__private::Box<#krate::__private::serde_json::value::RawValue>, #krate::__private::serde_json::Error> {
                #encode
            }

            fn decode(
                __orchestrix_type: &str,
                __orchestrix_version: u32,
                __orchestrix_data: &#krate::__private::serde_json::value::RawValue,
            ) -> ::core::result::Result<Self, #krate::error::DecodeErrorKind> {
                #decode
            }

            #personal

            #tags
        }
    }
}

/// A struct that serializes as `{}` and deserializes from any object.
fn empty_struct(krate: &TokenStream) -> TokenStream {
    let serde_crate = serde_crate(krate);
    quote! {
        #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_crate)]
        struct __OrchestrixEmpty {}
    }
}

fn struct_impl(
    krate: &TokenStream,
    item: &syn::ItemStruct,
    stored: &Stored,
    unit: bool,
    personal: &[super::personal::Personal],
    tags: &[super::personal::Tag],
) -> TokenStream {
    let name = &stored.name;
    let version = stored.version;
    let (empty, encode, decode) = if unit {
        let data = decode_data(krate, stored, &quote!(__OrchestrixEmpty));
        (
            empty_struct(krate),
            quote!(#krate::__private::encode_raw(&__OrchestrixEmpty {})),
            quote! {
                let __OrchestrixEmpty {} = #data;
                ::core::result::Result::Ok(Self)
            },
        )
    } else {
        let data = decode_data(krate, stored, &quote!(Self));
        (TokenStream::new(), quote!(#krate::__private::encode_raw(self)), quote!(::core::result::Result::Ok(#data)))
    };
    let personal =
        if personal.is_empty() { Vec::new() } else { vec![super::personal::personal_data(krate, name, personal)] };
    let tags = (!tags.is_empty()).then(|| super::personal::tag_values(krate, tags, |field| quote!(&self.#field)));
    let bodies = Bodies {
        personal,
        tags,
        types: vec![event_type(krate, stored)],
        event_type: quote!(#name),
        schema_version: quote!(#version),
        encode,
        decode: quote! {
            if __orchestrix_type == #name {
                #decode
            } else {
                ::core::result::Result::Err(#krate::error::DecodeErrorKind::UnknownType)
            }
        },
    };
    let imp = event_impl(krate, &item.ident, bodies);
    quote!(#empty #imp)
}

fn enum_impl(krate: &TokenStream, item: &syn::ItemEnum, variants: &[Variant]) -> TokenStream {
    let serde_crate = serde_crate(krate);
    let mut shadows = TokenStream::new();
    let needs_empty =
        variants.iter().any(|v| matches!(&v.shape, Shape::Unit) || matches!(&v.shape, Shape::Named(f) if f.is_empty()));
    if needs_empty {
        shadows.extend(empty_struct(krate));
    }
    let mut event_types = Vec::new();
    let mut schema_versions = Vec::new();
    let mut encodes = Vec::new();
    let mut decodes = Vec::new();
    for variant in variants {
        let ident = &variant.ident;
        let Stored { name, version, .. } = &variant.stored;
        let serde = &variant.serde;
        // `{ .. }` matches every kind of variant.
        let pattern = quote!(Self::#ident { .. });
        event_types.push(quote!(#pattern => #name));
        schema_versions.push(quote!(#pattern => #version));
        match &variant.shape {
            Shape::Named(fields) if !fields.is_empty() => {
                let ser = format_ident!("__OrchestrixSer_{}", ident);
                let de = format_ident!("__OrchestrixDe_{}", ident);
                let names: Vec<_> = fields.iter().map(|f| &f.ident).collect();
                let types: Vec<_> = fields.iter().map(|f| &f.ty).collect();
                let attrs: Vec<_> = fields.iter().map(|f| &f.serde).collect();
                shadows.extend(quote! {
                    #[allow(non_camel_case_types)]
                    #[derive(#krate::__private::serde::Serialize)]
                    #[serde(crate = #serde_crate)]
                    #(#serde)*
                    struct #ser<'__orchestrix_a> {
                        #( #(#attrs)* #names: &'__orchestrix_a #types, )*
                    }

                    #[allow(non_camel_case_types)]
                    #[derive(#krate::__private::serde::Deserialize)]
                    #[serde(crate = #serde_crate)]
                    #(#serde)*
                    struct #de {
                        #( #(#attrs)* #names: #types, )*
                    }
                });
                encodes.push(quote! {
                    Self::#ident { #(#names),* } => #krate::__private::encode_raw(&#ser { #(#names),* })
                });
                let data = decode_data(krate, &variant.stored, &quote!(#de));
                decodes.push(quote! {
                    #name => {
                        let #de { #(#names),* } = #data;
                        ::core::result::Result::Ok(Self::#ident { #(#names),* })
                    }
                });
            }
            Shape::Named(_) | Shape::Unit => {
                encodes.push(quote!(#pattern => #krate::__private::encode_raw(&__OrchestrixEmpty {})));
                let data = decode_data(krate, &variant.stored, &quote!(__OrchestrixEmpty));
                let build =
                    if matches!(variant.shape, Shape::Unit) { quote!(Self::#ident) } else { quote!(Self::#ident {}) };
                decodes.push(quote! {
                    #name => {
                        let __OrchestrixEmpty {} = #data;
                        ::core::result::Result::Ok(#build)
                    }
                });
            }
            Shape::Newtype(ty) => {
                let inner = quote_spanned!(ty.span()=> #krate::__private::encode_raw(__orchestrix_inner));
                encodes.push(quote!(Self::#ident(__orchestrix_inner) => #inner));
                let data = decode_data(krate, &variant.stored, &quote_spanned!(ty.span()=> #ty));
                decodes.push(quote! {
                    #name => ::core::result::Result::Ok(Self::#ident(#data))
                });
            }
        }
    }
    let tags = enum_tags(krate, variants);
    let bodies = Bodies {
        tags,
        personal: variants
            .iter()
            .filter(|v| !v.personal.is_empty())
            .map(|v| super::personal::personal_data(krate, &v.stored.name, &v.personal))
            .collect(),
        types: variants.iter().map(|v| event_type(krate, &v.stored)).collect(),
        event_type: quote!(match *self { #(#event_types,)* }),
        schema_version: quote!(match *self { #(#schema_versions,)* }),
        encode: quote!(match self { #(#encodes,)* }),
        decode: quote! {
            match __orchestrix_type {
                #(#decodes,)*
                _ => ::core::result::Result::Err(#krate::error::DecodeErrorKind::UnknownType),
            }
        },
    };
    let imp = event_impl(krate, &item.ident, bodies);
    quote!(#shadows #imp)
}

/// `"::orchestrix::__private::schemars"` as a string literal, for `#[schemars(crate = ...)]`.
fn schemars_crate(krate: &TokenStream) -> syn::LitStr {
    let path = quote!(#krate::__private::schemars).to_string().replace(' ', "");
    syn::LitStr::new(&path, proc_macro2::Span::call_site())
}

/// A struct whose derived `JsonSchema` describes `{}` (any object), for
/// stored types without fields.
fn empty_schema_struct(krate: &TokenStream) -> TokenStream {
    let schemars_crate = schemars_crate(krate);
    quote! {
        #[derive(#krate::__private::schemars::JsonSchema)]
        #[schemars(crate = #schemars_crate)]
        struct __OrchestrixSchemaEmpty {}
    }
}

/// The `EventSchemas` impl around the per-type schema expressions, all
/// behind `if_schemars!` so that a missing feature is one clear error at
/// the `schema` key.
fn schemas_impl(
    krate: &TokenStream,
    span: proc_macro2::Span,
    ident: &syn::Ident,
    shadows: &TokenStream,
    schemas: &[TokenStream],
) -> TokenStream {
    let guard = quote_spanned!(span=> #krate::__private::if_schemars!);
    quote! {
        #guard {
            #shadows

            #[automatically_derived]
            impl #krate::event::EventSchemas for #ident {
                fn event_schemas() -> #krate::__private::Vec<#krate::event::EventSchema> {
                    ::std::vec![#(#schemas),*]
                }
            }
        }
    }
}

/// One schema struct per variant with fields (the same fields and
/// `#[serde]` attributes as the stored data), deriving `JsonSchema`.
fn enum_schemas(
    krate: &TokenStream,
    span: proc_macro2::Span,
    item: &syn::ItemEnum,
    variants: &[Variant],
) -> TokenStream {
    let schemars_crate = schemars_crate(krate);
    let mut shadows = TokenStream::new();
    let mut schemas = Vec::new();
    let needs_empty =
        variants.iter().any(|v| matches!(&v.shape, Shape::Unit) || matches!(&v.shape, Shape::Named(f) if f.is_empty()));
    if needs_empty {
        shadows.extend(empty_schema_struct(krate));
    }
    for variant in variants {
        let Stored { name, version, .. } = &variant.stored;
        let serde = &variant.serde;
        match &variant.shape {
            Shape::Named(fields) if !fields.is_empty() => {
                let shadow = format_ident!("__OrchestrixSchema_{}", variant.ident);
                let names: Vec<_> = fields.iter().map(|f| &f.ident).collect();
                let types: Vec<_> = fields.iter().map(|f| &f.ty).collect();
                let attrs: Vec<_> = fields.iter().map(|f| &f.serde).collect();
                shadows.extend(quote! {
                    #[allow(non_camel_case_types, dead_code)]
                    #[derive(#krate::__private::schemars::JsonSchema)]
                    #[schemars(crate = #schemars_crate)]
                    #(#serde)*
                    struct #shadow {
                        #( #(#attrs)* #names: #types, )*
                    }
                });
                schemas.push(quote!(#krate::__private::event_schema::<#shadow>(#name, #version)));
            }
            Shape::Named(_) | Shape::Unit => {
                schemas.push(quote!(#krate::__private::event_schema::<__OrchestrixSchemaEmpty>(#name, #version)));
            }
            Shape::Newtype(ty) => {
                // The check first, at the type: a type without `JsonSchema`
                // is reported there without a note naming `event_schema`,
                // and the compiler drops the call's same error at the same
                // place.
                schemas.push(quote_spanned! {ty.span()=> {
                    let _ = <#ty as #krate::__private::schemars::JsonSchema>::schema_name;
                    #krate::__private::event_schema::<#ty>(#name, #version)
                }});
            }
        }
    }
    schemas_impl(krate, span, &item.ident, &shadows, &schemas)
}

/// The schema of a struct event: a copy of its fields with their
/// `#[serde]` attributes (and the struct's), deriving `JsonSchema`.
fn struct_schemas(
    krate: &TokenStream,
    span: proc_macro2::Span,
    item: &syn::ItemStruct,
    stored: &Stored,
) -> TokenStream {
    let schemars_crate = schemars_crate(krate);
    let Stored { name, version, .. } = stored;
    let (shadows, schema) = match &item.fields {
        syn::Fields::Named(fields) => {
            let serde = item.attrs.iter().filter(|a| a.path().is_ident("serde"));
            let fields = fields.named.iter().map(|field| {
                let attrs = field.attrs.iter().filter(|a| a.path().is_ident("serde"));
                let ident = &field.ident;
                let ty = &field.ty;
                quote!(#(#attrs)* #ident: #ty)
            });
            (
                quote! {
                    #[allow(dead_code)]
                    #[derive(#krate::__private::schemars::JsonSchema)]
                    #[schemars(crate = #schemars_crate)]
                    #(#serde)*
                    struct __OrchestrixSchema {
                        #(#fields,)*
                    }
                },
                quote!(#krate::__private::event_schema::<__OrchestrixSchema>(#name, #version)),
            )
        }
        _ => (
            empty_schema_struct(krate),
            quote!(#krate::__private::event_schema::<__OrchestrixSchemaEmpty>(#name, #version)),
        ),
    };
    schemas_impl(krate, span, &item.ident, &shadows, &[schema])
}

/// The body of `Event::tags` for an enum: one arm per variant with tags.
fn enum_tags(krate: &TokenStream, variants: &[Variant]) -> Option<TokenStream> {
    let tag_arms: Vec<TokenStream> = variants
        .iter()
        .filter(|v| !v.tags.is_empty())
        .map(|v| {
            let ident = &v.ident;
            let fields: Vec<_> = v.tags.iter().map(|t| &t.field).collect();
            let body = super::personal::tag_values(krate, &v.tags, |field| quote!(#field));
            quote!(Self::#ident { #(#fields,)* .. } => #body)
        })
        .collect();
    (!tag_arms.is_empty()).then(|| {
        quote! {
            match self {
                #(#tag_arms,)*
                #[allow(unreachable_patterns)]
                _ => #krate::__private::Vec::new(),
            }
        }
    })
}

//! Generates the `Aggregate` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::model::Model;

pub(crate) fn expand(model: &Model) -> TokenStream {
    let item = &model.item;
    let Some(imp) = aggregate_impl(model, true) else { return item.clone() };
    quote! {
        #item
        const _: () = { #imp };
    }
}

/// The item plus, when the event and error types are known, an impl
/// without the forwarding and snapshot checks, so the only errors the user
/// sees are the ones reported.
pub(crate) fn fallback(model: &Model) -> TokenStream {
    let item = &model.item;
    match aggregate_impl(model, false) {
        Some(imp) => quote! {
            #item
            const _: () = { #imp };
        },
        None => item.clone(),
    }
}

fn aggregate_impl(model: &Model, full: bool) -> Option<TokenStream> {
    let Model { krate, ident, generics, event, error, id, name, snapshot_every, snapshot_version, .. } = model;
    let (ident, event, error) = (ident.as_ref()?, event.as_ref()?, error.as_ref()?);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let every = snapshot_every
        .map_or_else(|| quote!(::core::option::Option::None), |(_, n)| quote!(::core::num::NonZeroU64::new(#n)));
    let raw = quote!(#krate::__private::serde_json::value::RawValue);
    let json_error = quote!(#krate::__private::serde_json::Error);
    let snapshots = match snapshot_every {
        Some((span, _)) if full => {
            // Spanned at `snapshot_every`: a state without `Serialize` or
            // `Deserialize` is reported there, once per missing trait.
            let encode = quote_spanned!(*span=> __orchestrix_snapshot_encode(self));
            let decode = quote_spanned!(*span=> __orchestrix_snapshot_decode(__orchestrix_state));
            quote! {
                fn snapshot_state(&self) -> ::core::option::Option<::core::result::Result<#krate::__private::Box<#raw>, #json_error>> {
                    fn __orchestrix_snapshot_encode<__OrchestrixState: #krate::__private::serde::Serialize>(
                        state: &__OrchestrixState,
                    ) -> ::core::result::Result<#krate::__private::Box<#raw>, #json_error> {
                        #krate::__private::encode_raw(state)
                    }
                    ::core::option::Option::Some(#encode)
                }

                fn restore_state(__orchestrix_state: &#raw) -> ::core::option::Option<::core::result::Result<Self, #json_error>> {
                    fn __orchestrix_snapshot_decode<__OrchestrixState: #krate::__private::serde::de::DeserializeOwned>(
                        state: &#raw,
                    ) -> ::core::result::Result<__OrchestrixState, #json_error> {
                        #krate::__private::serde_json::from_str(state.get())
                    }
                    ::core::option::Option::Some(#decode)
                }
            }
        }
        _ => TokenStream::new(),
    };
    // Spanned at the type's name, signature included: without an inherent
    // `apply`, the call resolves to this very trait method, and the lint
    // (silent in code it considers macro-generated) reports it there.
    let apply = if full {
        quote_spanned! {ident.span()=>
            #[deny(unconditional_recursion)]
            #[inline]
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                <#ident #ty_generics>::apply(self, __orchestrix_event)
            }
        }
    } else {
        quote! {
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                let _ = __orchestrix_event;
            }
        }
    };
    Some(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Aggregate for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const SNAPSHOT_EVERY: ::core::option::Option<::core::num::NonZeroU64> = #every;
            const SNAPSHOT_VERSION: u32 = #snapshot_version;
            type Id = #id;
            type Event = #event;
            type Error = #error;

            #apply

            #snapshots
        }
    })
}

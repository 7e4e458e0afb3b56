//! Generates the `Aggregate` impl and the `CommandSet` impl.

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
            // Each call follows a check by qualified path, at the same
            // place: a missing trait is reported there without a note
            // naming the generated function, and the compiler drops the
            // call's same error.
            let serializer = quote!(#krate::__private::serde_json::value::Serializer);
            let encode = quote_spanned! {*span=> {
                let _ = <Self as #krate::__private::serde::Serialize>::serialize::<#serializer>;
                snapshot_needs_serialize(self)
            }};
            let value = quote!(#krate::__private::serde_json::Value);
            let decode = quote_spanned! {*span=> {
                let _ = <Self as #krate::__private::serde::Deserialize<'_>>::deserialize::<#value>;
                snapshot_needs_deserialize(__orchestrix_state)
            }};
            quote! {
                fn snapshot_state(&self) -> ::core::option::Option<::core::result::Result<#krate::__private::Box<#raw>, #json_error>> {
                    fn snapshot_needs_serialize<State: #krate::__private::serde::Serialize>(
                        state: &State,
                    ) -> ::core::result::Result<#krate::__private::Box<#raw>, #json_error> {
                        #krate::__private::encode_raw(state)
                    }
                    ::core::option::Option::Some(#encode)
                }

                fn restore_state(__orchestrix_state: &#raw) -> ::core::option::Option<::core::result::Result<Self, #json_error>> {
                    fn snapshot_needs_deserialize<State: #krate::__private::serde::de::DeserializeOwned>(
                        state: &#raw,
                    ) -> ::core::result::Result<State, #json_error> {
                        #krate::__private::serde_json::from_str(state.get())
                    }
                    ::core::option::Option::Some(#decode)
                }
            }
        }
        _ => TokenStream::new(),
    };
    let apply = if full {
        // `<T>::apply` is the inherent method when there is one, and this
        // trait method otherwise (which would recurse). The pair tells them
        // apart by their types (see `orchestrix::__private::apply`): the
        // same function twice picks a check that fails at the type's name,
        // with a message naming the method to write.
        let private = quote!(#krate::__private::apply);
        let pair = quote_spanned! {ident.span()=>
            (&#private::ApplyPair::<Self, _, _>::new(<#ident #ty_generics>::apply, <#ident #ty_generics as #krate::Aggregate>::apply))
        };
        let check = quote_spanned!(ident.span()=> __orchestrix_check(&*self));
        quote! {
            #[inline]
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                #[allow(unused_imports)]
                use #private::{FindInherentApply as _, FoundInherentApply as _};
                let (__orchestrix_check, __orchestrix_apply) = #pair.inherent_apply();
                #check;
                let __orchestrix_apply: fn(&mut Self, &Self::Event) = __orchestrix_apply;
                __orchestrix_apply(self, __orchestrix_event)
            }
        }
    } else {
        quote! {
            fn apply(&mut self, __orchestrix_event: &Self::Event) {
                let _ = __orchestrix_event;
            }
        }
    };
    let commands = command_set(krate, ident, generics);
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

        #commands
    })
}

/// `CommandSet`: the commands of the type's `#[command_handler]` block
/// (`CommandHandlerBlock`), or none when it has no such block, so that an
/// aggregate without commands can be registered too. Method resolution
/// tells the two apart: `Probe<T>` (only when `T` has a block) is tried
/// before `&Probe<T>`.
fn command_set(krate: &TokenStream, ident: &syn::Ident, generics: &syn::Generics) -> TokenStream {
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let vec = quote!(#krate::__private::Vec<#krate::__private::CommandDescriptor>);
    if !generics.params.is_empty() {
        // Method resolution cannot decide for a generic type: it needs the block.
        let mut generics = generics.clone();
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(#ident #ty_generics: #krate::command::CommandHandlerBlock));
        let where_clause = &generics.where_clause;
        return quote! {
            #[automatically_derived]
            impl #impl_generics #krate::command::CommandSet for #ident #ty_generics #where_clause {
                fn commands() -> #vec {
                    <Self as #krate::command::CommandHandlerBlock>::commands()
                }
            }
        };
    }
    quote! {
        struct __OrchestrixProbe<T>(::core::marker::PhantomData<T>);

        trait __OrchestrixWithBlock {
            fn __orchestrix_commands(&self) -> #vec;
        }

        impl<T: #krate::command::CommandHandlerBlock> __OrchestrixWithBlock for __OrchestrixProbe<T> {
            fn __orchestrix_commands(&self) -> #vec {
                <T as #krate::command::CommandHandlerBlock>::commands()
            }
        }

        trait __OrchestrixWithoutBlock {
            fn __orchestrix_commands(&self) -> #vec;
        }

        impl<T> __OrchestrixWithoutBlock for &__OrchestrixProbe<T> {
            fn __orchestrix_commands(&self) -> #vec {
                #krate::__private::Vec::new()
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::command::CommandSet for #ident #ty_generics #where_clause {
            fn commands() -> #vec {
                (&__OrchestrixProbe::<Self>(::core::marker::PhantomData)).__orchestrix_commands()
            }
        }
    }
}

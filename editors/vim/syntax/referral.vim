" Vim syntax file for the referral rule language (*.rule).
" Generated from grammar/referral.lark by `python -m compiler.textmate`; do not edit.
scriptencoding utf-8
if exists("b:current_syntax")
  finish
endif

syn case ignore
syn keyword referralKeyword after as before currency day days define ever example exclusive expect from given hold if issue limit month nothing of per priority reverse reward rewards rule then timezone to up year
syn keyword referralOperator and in is not or within
syn keyword referralConstant false null true

syn match referralOperator "==\|!=\|<>\|>=\|<=\|[=<>]"
syn match referralDelimiter "[()\[\],]"
syn match referralPhrase "\<\a[[:alnum:]_'-]*\>"
syn match referralField "\<\h\w*\%(\.\h\w*\)\+"
syn match referralNumber "-\=\<\d\+\%(\.\d\+\)\=\>"
syn match referralPercent "\<\d\+\%(\.\d\+\)\=\s*%"
syn match referralDate "\<\d\{4}-\d\{2}-\d\{2}\>"
syn match referralMoney "-\=[₹$€£¥]\s*\d[0-9,]*\%(\.\d\+\)\="
syn match referralMoney "\<\a\{3}\s\+\d[0-9,]*\%(\.\d\+\)\=\>"
syn match referralMoney "\<\d[0-9,]*\%(\.\d\+\)\=\s\+\%(\%(and\|day\|not\|per\)\>\)\@!\a\{3}\>"
syn match referralName "\%(\<\%(currency\|per\|rule\|to\)\s\+\)\@<=\h\w*"
syn match referralOperator "\<contains\>"
syn region referralString start=+"+ skip=+\\.+ end=+"+ oneline
syn match referralComment "#.*$" contains=@Spell

hi def link referralKeyword Keyword
hi def link referralOperator Operator
hi def link referralConstant Constant
hi def link referralDelimiter Delimiter
hi def link referralPhrase Function
hi def link referralField Identifier
hi def link referralNumber Number
hi def link referralPercent Number
hi def link referralDate Number
hi def link referralMoney Number
hi def link referralName Type
hi def link referralString String
hi def link referralComment Comment

let b:current_syntax = "referral"

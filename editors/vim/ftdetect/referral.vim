" *.rule files are referral rule programs.
autocmd BufRead,BufNewFile *.rule setfiletype referral

"""Mail watching (lfd's LF_QUEUE_ALERT and LF_SCRIPT_ALERT): every 5 minutes the mail queue's
length (postfix's `postqueue -j`, exim's `exim -bp`) against a limit, with the top senders and
recipients; and the mails each script sent in the last hour, from exim's `cwd=` lines,
postfix's pickup lines (by uid) and PHP's mail.log (`mail() on [/path/script.php:N]`), against
a limit, with the path and a sample. settings: [mailwatch]; queue: the queue; scripts: the
script counts and the opt-in disabling; job: the job."""

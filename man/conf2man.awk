# conf2man.awk: payhookd.conf(5) from etc/payhookd.conf, the documented
# example, so the manual page and the example cannot drift apart: every
# key there (given or commented out) becomes an entry with its default and
# the comment above it; "; ---- Title ----" lines become sections.
#   awk -v version=0.1.0 -v conf=/etc/payhookd/payhookd.conf -f man/conf2man.awk \
#       etc/payhookd.conf > payhookd.conf.5
function esc(s) {
    gsub(/\\/, "\\e", s)
    if (s ~ /^[.']/) s = "\\&" s
    return s
}
function flush(  i) {
    if (n == 0) return
    print ".PP"
    for (i = 1; i <= n; i++) print esc(text[i])
    n = 0
}
BEGIN {
    if (conf == "") conf = "/etc/payhookd/payhookd.conf"
    print ".TH PAYHOOKD.CONF 5 \"\" \"payhookd " version "\" \"File Formats\""
    print ".SH NAME"
    print "payhookd.conf \\- configuration of payhookd, the payment callback receiver"
    print ".SH SYNOPSIS"
    print conf
    print ".SH DESCRIPTION"
    n = 0; started = 0
}
NR == 1 { next }                      # the file's title line
{
    line = $0
    sub(/^; ?/, "", line)
    comment = ($0 ~ /^;/)
}
$0 ~ /^; ----/ {
    flush()
    t = line; sub(/^-+ */, "", t); sub(/ *-+$/, "", t)
    print ".SH \"" toupper(t) "\""
    started = 1
    next
}
line ~ /^\[[a-z.]+( [A-Za-z0-9_.-]+)?\]$/ {
    flush()
    if (!started) { print ".SH \"SERVER AND STORE\""; started = 1 }
    print ".SS " esc(line)
    next
}
line ~ /^[a-z_]+ = / && (comment || $0 !~ /^;/) {
    key = line; sub(/ = .*/, "", key)
    val = line; sub(/^[a-z_]+ = /, "", val)
    print ".TP"
    print "\\fB" key "\\fR = " esc(val)
    for (i = 1; i <= n; i++) print esc(text[i])
    n = 0
    next
}
/^[ \t]*$/ { flush(); next }
comment { text[++n] = line; next }
END {
    flush()
    print ".SH FILES"
    print ".TP"
    print conf
    print "The configuration. Check it with \\fBpayhookd \\-c FILE \\-\\-check\\fR; reload a running"
    print "daemon with SIGHUP (a bad new file is refused and the running configuration kept)."
    print ".SH SEE ALSO"
    print "\\fBpayhookd\\fR(8), \\fBpayhookctl\\fR(1)"
}

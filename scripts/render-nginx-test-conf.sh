#!/usr/bin/env bash
# scripts/render-nginx-test-conf.sh - renders nginx/test.conf (the unprivileged loopback nginx of
# the tests, scripts/stack.sh and `make demo`) into a prefix directory, and prints the path of the
# rendered nginx.conf on stdout.
#
# Usage: scripts/render-nginx-test-conf.sh --prefix DIR --port PORT --fcgi-socket PATH
#            [--fastcgi-params FILE]
#
# Writes, in DIR (created if missing):
#   nginx.conf       nginx/test.conf with @PREFIX@, @PORT@, @FCGI_SOCKET@ replaced
#   runcell.conf     nginx/runcell.conf with /run/runcell/fcgi.sock replaced by PATH (the
#                    production locations, included by nginx.conf)
#   fastcgi_params   a copy of FILE (default /etc/nginx/fastcgi_params; a built-in equivalent
#                    when it does not exist)
#   tmp/             nginx's temp directories
# Then start nginx with:  nginx -p DIR -c DIR/nginx.conf -e stderr
#
# The same substitution by hand, for the record:
#   sed -e "s|@PREFIX@|$DIR|g" -e "s|@PORT@|$PORT|g" -e "s|@FCGI_SOCKET@|$SOCK|g" nginx/test.conf
#   sed -e "s|unix:/run/runcell/fcgi.sock|unix:$SOCK|" nginx/runcell.conf
# Values are limited to [A-Za-z0-9/._-] so that neither sed nor nginx can misread them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
nginx_dir=$here/../nginx
prefix="" port="" sock="" params=/etc/nginx/fastcgi_params

die() { echo "render-nginx-test-conf: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --fcgi-socket) sock=${2:?--fcgi-socket needs a path}; shift 2 ;;
    --fastcgi-params) params=${2:?--fastcgi-params needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done
if [ -z "$prefix" ] || [ -z "$port" ] || [ -z "$sock" ]; then
    die "--prefix, --port and --fcgi-socket are required"
fi
safe_path() { [[ $1 == /* && $1 =~ ^[A-Za-z0-9/._-]+$ ]]; }
safe_path "$prefix" || die "--prefix must be an absolute path of [A-Za-z0-9/._-]"
safe_path "$sock" || die "--fcgi-socket must be an absolute path of [A-Za-z0-9/._-]"
[ "${#sock}" -le 107 ] || die "--fcgi-socket is longer than a unix socket path may be (107)"
if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then
    die "--port must be 1-65535"
fi
if [ ! -f "$nginx_dir/test.conf" ] || [ ! -f "$nginx_dir/runcell.conf" ]; then
    die "nginx/test.conf or nginx/runcell.conf not found in $nginx_dir"
fi

mkdir -p "$prefix/tmp/body" "$prefix/tmp/fastcgi" "$prefix/tmp/proxy" "$prefix/tmp/uwsgi" "$prefix/tmp/scgi"

sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@FCGI_SOCKET@|$sock|g" \
    "$nginx_dir/test.conf" >"$prefix/nginx.conf.tmp"
sed -e "s|unix:/run/runcell/fcgi.sock|unix:$sock|" "$nginx_dir/runcell.conf" >"$prefix/runcell.conf.tmp"
if grep -q '@[A-Z_]*@' "$prefix/nginx.conf.tmp"; then
    die "nginx/test.conf has a placeholder this script does not know: $(grep -o '@[A-Z_]*@' "$prefix/nginx.conf.tmp" | head -n 1)"
fi
if grep -q '/run/runcell/fcgi.sock' "$prefix/runcell.conf.tmp" && [ "$sock" != /run/runcell/fcgi.sock ]; then
    die "nginx/runcell.conf still names /run/runcell/fcgi.sock after the substitution"
fi

if [ -f "$params" ]; then
    cp "$params" "$prefix/fastcgi_params.tmp"
else
    # The parameters runcell-fcgi reads (docs/FCGI.md), as Debian's fastcgi_params sets them.
    cat >"$prefix/fastcgi_params.tmp" <<'EOF'
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
EOF
fi
mv "$prefix/nginx.conf.tmp" "$prefix/nginx.conf"
mv "$prefix/runcell.conf.tmp" "$prefix/runcell.conf"
mv "$prefix/fastcgi_params.tmp" "$prefix/fastcgi_params"
echo "$prefix/nginx.conf"

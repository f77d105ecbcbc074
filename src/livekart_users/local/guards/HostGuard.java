/*
 * DynamoDB Local answering this machine only: a Jetty handler in front of its own.
 *
 * A web page can point a name it owns at 127.0.0.1 (DNS rebinding) and then call DynamoDB
 * Local as its own origin: the browser sends `Host: rebind.attacker.example:PORT` and a
 * matching `Origin`, and DynamoDB Local, which checks neither and no signature, answers. This
 * handler refuses, with 403 and before DynamoDB Local sees it, a request whose Host is not a
 * loopback name (127.0.0.1, localhost, [::1], with or without a port) or whose Origin is not
 * one of the allowed origins (-Dlivekart.origins, comma-separated: LIVEKART_LOCAL_ALLOWED_ORIGINS).
 * The rule is loopback.py's `refusal`, which the stack's Python listeners use.
 *
 * Compiled against the Jetty 12 that DynamoDB Local ships (the npm lockfile pins it); if it
 * cannot be linked, LoopbackDynamoDB refuses to start rather than serve unguarded.
 * Rebuild the .class files beside this file (javac finds the jars in the pinned install):
 *   javac --release 17 -cp '<dynamodb_local>/DynamoDBLocal_lib/*' HostGuard.java LoopbackDynamoDB.java
 */

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.util.Callback;

public final class HostGuard extends Handler.Wrapper {
    private static final Pattern LOOPBACK_HOST =
            Pattern.compile("(?:127\\.0\\.0\\.1|localhost|\\[::1\\])(?::[0-9]{1,5})?");

    private final Set<String> allowedOrigins;

    HostGuard(Handler inner, Set<String> allowedOrigins) {
        super(inner);
        this.allowedOrigins = allowedOrigins;
    }

    /** Put the guard in front of the handler of `server` (a Jetty Server, not yet started). */
    static void install(Object server, String origins) {
        Server jetty = (Server) server;
        Set<String> allowed = Arrays.stream(origins.split(","))
                .map(String::trim)
                .filter(origin -> !origin.isEmpty())
                .collect(Collectors.toUnmodifiableSet());
        Handler inner = jetty.getHandler();
        jetty.setHandler(new HostGuard(inner, allowed));
    }

    static String refusal(String host, String origin, Set<String> allowed) {
        if (host == null || !LOOPBACK_HOST.matcher(host.toLowerCase(java.util.Locale.ROOT)).matches()) {
            return "Host is not this machine: the local stack answers 127.0.0.1, localhost and [::1] only";
        }
        if (origin != null && !allowed.contains(origin)) {
            return "origin is not allowed: set LIVEKART_LOCAL_ALLOWED_ORIGINS";
        }
        return null;
    }

    @Override
    public boolean handle(Request request, Response response, Callback callback) throws Exception {
        String why = refusal(request.getHeaders().get("Host"), request.getHeaders().get("Origin"),
                allowedOrigins);
        if (why == null) {
            return super.handle(request, response, callback);
        }
        byte[] body = (why + "\n").getBytes(StandardCharsets.UTF_8);
        response.setStatus(403);
        response.getHeaders().put("Content-Type", "text/plain; charset=utf-8");
        response.getHeaders().put("Content-Length", Integer.toString(body.length));
        response.write(true, ByteBuffer.wrap(body), callback);
        return true;
    }
}

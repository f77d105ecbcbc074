/*
 * DynamoDB Local, listening on one address (the loopback interface) instead of every interface.
 *
 * DynamoDB Local has no option for its address: ServerRunner builds a Jetty server on a port
 * only, and Jetty then listens on every interface. This launcher builds the server the way
 * ServerRunner.main does (same command line, through the public createServerFromCommandLineArgs
 * that AWS documents for embedding), sets the host of each Jetty connector before starting it,
 * and starts it. It skips ServerRunner.main's telemetry set-up, so nothing is ever sent.
 *
 * Everything is reached by reflection, so this compiles and runs with nothing but a Java 17
 * runtime on the class path beside DynamoDBLocal.jar. When the host cannot be set (a future
 * DynamoDB Local built otherwise), it says so on one line beginning "livekart:" and serves on
 * every interface rather than not at all; `local up` reads the real address and warns.
 *
 * It also puts HostGuard in front of DynamoDB Local's handler, so that only loopback Host
 * values and the allowed origins (-Dlivekart.origins) are served; when that cannot be done it
 * exits rather than serve a DNS-rebinding web page.
 *
 * Run: java -Dlivekart.host=127.0.0.1 -Dlivekart.origins=<allowed, comma-separated>
 *      -cp <this folder><sep>DynamoDBLocal.jar LoopbackDynamoDB <DynamoDB Local's own options>
 * Rebuild the .class files beside this file: see HostGuard.java.
 */

import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;

public final class LoopbackDynamoDB {
    private static final String RUNNER = "software.amazon.dynamodb.services.local.main.ServerRunner";

    private LoopbackDynamoDB() {
    }

    public static void main(String[] args) throws Throwable {
        String host = System.getProperty("livekart.host", "127.0.0.1");
        Class<?> runner = Class.forName(RUNNER);
        Object proxy;
        try {
            proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class)
                    .invoke(null, (Object) args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
        try {
            Field field = proxy.getClass().getDeclaredField("server");
            field.setAccessible(true);
            Object jetty = field.get(proxy);
            Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
            for (Object connector : connectors) {
                connector.getClass().getMethod("setHost", String.class).invoke(connector, host);
            }
        } catch (ReflectiveOperationException | RuntimeException e) {
            System.out.println("livekart: cannot choose DynamoDB Local's address (" + e
                    + "): it listens on every network interface");
        }
        try {
            Field field = proxy.getClass().getDeclaredField("server");
            field.setAccessible(true);
            HostGuard.install(field.get(proxy), System.getProperty("livekart.origins", ""));
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            System.out.println("livekart: cannot guard DynamoDB Local against other hosts and "
                    + "origins (" + e + "): not starting it");
            System.exit(1);
        }
        try {
            proxy.getClass().getMethod("start").invoke(proxy);
            proxy.getClass().getMethod("join").invoke(proxy);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }
}

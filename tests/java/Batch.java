// pgjdbc's write path and cursors against Eddy: executeBatch and executeUpdate counts, with the
// default prepareThreshold (pgjdbc prepares the statement on the server after 5 executions, and
// at once for a batch of the same statement) and with prepareThreshold=0 (never), and
// setFetchSize on a push query. Run by tests/it/clients.rs (compiled there with javac) with the
// server's port; prints one line per fact, which the Rust test compares.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public class Batch {
    static Connection connect(String port, String prepareThreshold) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "eddy");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        if (prepareThreshold != null) {
            props.setProperty("prepareThreshold", prepareThreshold);
        }
        return DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + port + "/eddy", props);
    }

    static long count(Connection conn, String stream) throws Exception {
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM " + stream)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /// A batch of 12 one-row INSERTs, then 7 executeUpdates of one row and 7 of two rows.
    static void writes(String port, String prepareThreshold, String stream) throws Exception {
        String label = prepareThreshold == null ? "default" : "threshold=" + prepareThreshold;
        try (Connection conn = connect(port, prepareThreshold)) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE STREAM " + stream + " (id INT, name VARCHAR)");
            }
            try (PreparedStatement ps =
                     conn.prepareStatement("INSERT INTO " + stream + " VALUES (?, ?)")) {
                for (int i = 0; i < 12; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i);
                    ps.addBatch();
                }
                System.out.println(label + " batch " + Arrays.toString(ps.executeBatch()));
                List<Integer> counts = new ArrayList<>();
                for (int i = 0; i < 7; i++) {
                    ps.setInt(1, 100 + i);
                    ps.setString(2, "update " + i);
                    counts.add(ps.executeUpdate());
                }
                System.out.println(label + " executeUpdate " + counts);
            }
            try (PreparedStatement ps = conn.prepareStatement(
                     "INSERT INTO " + stream + " VALUES (?, ?), (?, ?)")) {
                List<Integer> counts = new ArrayList<>();
                for (int i = 0; i < 7; i++) {
                    ps.setInt(1, 200 + i);
                    ps.setString(2, "a");
                    ps.setInt(3, 300 + i);
                    ps.setString(4, "b");
                    counts.add(ps.executeUpdate());
                }
                System.out.println(label + " executeUpdate two rows " + counts);
            }
            System.out.println(label + " rows " + count(conn, stream));
        }
    }

    /// A push query read with a fetch size of 2 (autocommit off: pgjdbc reads through a
    /// portal, 2 rows per Execute) while another connection inserts 2 rows at a time, each pair
    /// only after the reader holds the one before: the rows must come in chunks as they arrive.
    static void pushFetch(String port) throws Exception {
        try (Connection writer = connect(port, null); Connection reader = connect(port, null)) {
            try (Statement st = writer.createStatement()) {
                st.execute("CREATE STREAM ticks (id INT)");
            }
            Semaphore pairRead = new Semaphore(0);
            Thread inserts = new Thread(() -> {
                try (PreparedStatement ps = writer.prepareStatement("INSERT INTO ticks VALUES (?)")) {
                    for (int pair = 0; pair < 3; pair++) {
                        if (pair > 0 && !pairRead.tryAcquire(60, TimeUnit.SECONDS)) {
                            throw new IllegalStateException("the reader never got pair " + pair);
                        }
                        for (int i = 2 * pair; i < 2 * pair + 2; i++) {
                            ps.setInt(1, i);
                            ps.executeUpdate();
                        }
                    }
                } catch (Exception e) {
                    e.printStackTrace();
                }
            });
            try (Statement st = reader.createStatement()) {
                st.execute("SET 'auto.offset.reset' = 'earliest'");
            }
            reader.setAutoCommit(false);
            inserts.start();
            List<Integer> ids = new ArrayList<>();
            try (Statement st = reader.createStatement()) {
                st.setFetchSize(2);
                try (ResultSet rs = st.executeQuery("SELECT id FROM ticks EMIT CHANGES LIMIT 6")) {
                    while (rs.next()) {
                        ids.add(rs.getInt(1));
                        if (ids.size() % 2 == 0) {
                            pairRead.release();
                        }
                    }
                }
            }
            reader.commit();
            inserts.join(60_000);
            System.out.println("push fetch " + ids);
        }
    }

    public static void main(String[] args) throws Exception {
        writes(args[0], null, "w_default");
        writes(args[0], "0", "w_zero");
        pushFetch(args[0]);
        System.out.println("ok");
    }
}

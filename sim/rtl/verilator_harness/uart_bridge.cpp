// A Verilator-built board: clocks the design and bridges its UART pins to one TCP client.
//
// The design (Verilator prefix Vtop) has the ports clk, rst, uart_rx, uart_tx and idle. Bytes
// from the client are sent bit by bit into uart_rx at --cycles-per-bit (8N1, each bit edge at
// the nearest cycle to its ideal time), and bytes decoded from uart_tx (sampled in the middle
// of each bit) go back to the client. When the design reports idle and there is nothing to
// send either way, the harness sleeps in select() instead of clocking: simulated time only
// moves while something happens.
//
// Usage: uart_bridge --cycles-per-bit X [--port N] [--keep-listening] [--stats FILE]
//                    [--reset-cycles N] [--trace FILE.fst [--trace-from C] [--trace-cycles N]]
// It prints "LISTENING <port>" once it listens on 127.0.0.1, then serves one client at a time.
// Without --keep-listening it exits when the first client disconnects. SIGTERM and SIGINT end
// it cleanly. At exit it writes one JSON object of counters to --stats.
//
// Built with Verilator's --trace-fst, --trace writes the clock cycles [C, C + N) to an FST file
// (cycle n from n * 10 ns, as in the cocotb runs); without --trace-from nothing is written until
// a line "trace N" on standard input starts a window of N cycles there and then.

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_fst_c.h"
#endif

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

struct Options {
    double cycles_per_bit = 0;
    int port = 0;
    bool keep_listening = false;
    std::string stats_path;
    int reset_cycles = 8;
    std::string trace_path;
    long long trace_from = -1;  // -1: when standard input says so
    long long trace_cycles = 100000;
};

[[noreturn]] void usage(const char *message) {
    std::fprintf(stderr, "uart_bridge: %s\nusage: uart_bridge --cycles-per-bit X [--port N] "
                         "[--keep-listening] [--stats FILE] [--reset-cycles N] "
                         "[--trace FILE.fst [--trace-from C] [--trace-cycles N]]\n", message);
    std::exit(2);
}

Options parse(int argc, char **argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
            return argv[++i];
        };
        if (arg == "--cycles-per-bit") options.cycles_per_bit = std::atof(value());
        else if (arg == "--port") options.port = std::atoi(value());
        else if (arg == "--keep-listening") options.keep_listening = true;
        else if (arg == "--stats") options.stats_path = value();
        else if (arg == "--reset-cycles") options.reset_cycles = std::atoi(value());
        else if (arg == "--trace") options.trace_path = value();
        else if (arg == "--trace-from") options.trace_from = std::atoll(value());
        else if (arg == "--trace-cycles") options.trace_cycles = std::atoll(value());
        else if (arg.rfind("+verilator", 0) == 0) continue;
        else usage(("unknown argument " + arg).c_str());
    }
    if (!(options.cycles_per_bit >= 2)) usage("--cycles-per-bit must be at least 2");
#if !VM_TRACE
    if (!options.trace_path.empty()) usage("--trace needs a build with Verilator's --trace-fst");
#endif
    return options;
}

// Host -> design: one 8N1 frame at a time, bit k driven from round(k * cycles_per_bit).
class Serializer {
  public:
    explicit Serializer(double cycles_per_bit) : cycles_per_bit_(cycles_per_bit) {}
    std::deque<uint8_t> queue;

    bool busy() const { return active_ || !queue.empty(); }

    // The line level for the given cycle.
    int level(uint64_t cycle) {
        if (!active_) {
            if (queue.empty()) return 1;
            bits_ = 0x200 | (uint32_t(queue.front()) << 1);  // start 0, data LSB first, stop 1
            queue.pop_front();
            start_ = cycle;
            active_ = true;
        }
        double elapsed = double(cycle - start_);
        int bit = int(std::floor(elapsed / cycles_per_bit_ + 1e-9));
        if (bit >= 10) {
            active_ = false;
            return level(cycle);
        }
        return (bits_ >> bit) & 1;
    }

  private:
    double cycles_per_bit_;
    bool active_ = false;
    uint32_t bits_ = 0;
    uint64_t start_ = 0;
};

// Design -> host: waits for a falling edge, samples each bit at (k + 1/2) bit periods.
class Deserializer {
  public:
    explicit Deserializer(double cycles_per_bit) : cycles_per_bit_(cycles_per_bit) {}
    uint64_t framing_errors = 0;

    bool busy() const { return active_; }

    // Returns a received byte, or -1.
    int sample(uint64_t cycle, int line) {
        if (!active_) {
            if (line == 0 && previous_ == 1) {
                active_ = true;
                start_ = cycle;
                bit_ = 0;
                value_ = 0;
            }
            previous_ = line;
            return -1;
        }
        previous_ = line;
        uint64_t sample_at = start_ + uint64_t(std::llround((bit_ + 0.5) * cycles_per_bit_));
        if (cycle < sample_at) return -1;
        int bit = bit_++;
        if (bit == 0) {
            if (line != 0) active_ = false;  // a glitch, not a start bit
            return -1;
        }
        if (bit <= 8) {
            value_ |= line << (bit - 1);
            return -1;
        }
        active_ = false;
        if (line != 1) {
            ++framing_errors;
            return -1;
        }
        return value_;
    }

  private:
    double cycles_per_bit_;
    bool active_ = false;
    int previous_ = 1;
    int bit_ = 0;
    int value_ = 0;
    uint64_t start_ = 0;
};

// The FST waveform of a window of clock cycles, and the "trace N" lines of standard input that
// move it.
class Tracer {
  public:
    static constexpr uint64_t kCyclePs = 10000;  // a cycle's simulation time (10 ns)

    void open(Vtop *top, const Options &options) {
#if VM_TRACE
        if (options.trace_path.empty()) return;
        Verilated::traceEverOn(true);
        fst_.reset(new VerilatedFstC);
        top->trace(fst_.get(), 99);
        fst_->open(options.trace_path.c_str());
        count_ = uint64_t(options.trace_cycles);
        if (options.trace_from >= 0) window(uint64_t(options.trace_from));
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        listening_ = true;
#else
        (void)top;
        (void)options;
#endif
    }

    // Standard input's descriptor while it may still say "trace N", else -1.
    int control() const { return listening_ ? 0 : -1; }

    // Reads what standard input said; a "trace N" line starts a window of N cycles at `cycle`.
    void poll(uint64_t cycle) {
        if (!listening_) return;
        char buffer[256];
        ssize_t got;
        while ((got = read(0, buffer, sizeof buffer)) > 0) pending_.append(buffer, size_t(got));
        if (got == 0) listening_ = false;  // the other end closed it
        size_t end;
        while ((end = pending_.find('\n')) != std::string::npos) {
            std::string line = pending_.substr(0, end);
            pending_.erase(0, end + 1);
            if (line.rfind("trace ", 0) == 0) {
                count_ = std::strtoull(line.c_str() + 6, nullptr, 10);
                window(cycle);
            }
        }
    }

    // After the design was evaluated with the clock low (half 0) or high (half 1).
    void dump(uint64_t cycle, int half) {
#if VM_TRACE
        if (fst_ && cycle >= first_ && cycle < end_) {
            fst_->dump(cycle * kCyclePs + half * kCyclePs / 2);
        }
#else
        (void)cycle;
        (void)half;
#endif
    }

    void close() {
#if VM_TRACE
        if (fst_) fst_->close();
#endif
    }

  private:
    void window(uint64_t first) {
        first_ = first;
        end_ = first + count_;
    }

#if VM_TRACE
    std::unique_ptr<VerilatedFstC> fst_;
#endif
    bool listening_ = false;
    std::string pending_;
    uint64_t count_ = 0;
    uint64_t first_ = ~0ULL;
    uint64_t end_ = ~0ULL;
};

int listen_on(int port, int *bound_port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { std::perror("uart_bridge: socket"); std::exit(1); }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(uint16_t(port));
    if (bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address) < 0 || listen(fd, 1) < 0) {
        std::fprintf(stderr, "uart_bridge: cannot listen on 127.0.0.1:%d: %s\n", port,
                     std::strerror(errno));
        std::exit(1);
    }
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
    *bound_port = ntohs(address.sin_port);
    return fd;
}

// Waits for a client (or a stop signal); returns its non-blocking socket or -1.
int accept_client(int listener) {
    while (!stop_requested) {
        fd_set readable;
        FD_ZERO(&readable);
        FD_SET(listener, &readable);
        timeval timeout{0, 100000};
        if (select(listener + 1, &readable, nullptr, nullptr, &timeout) > 0) {
            int client = accept(listener, nullptr, nullptr);
            if (client < 0) continue;
            fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
            int one = 1;
            setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return client;
        }
    }
    return -1;
}

struct Counters {
    uint64_t cycles = 0;
    uint64_t bytes_to_design = 0;
    uint64_t bytes_from_design = 0;
    uint64_t connections = 0;
    double clocking_seconds = 0;  // wall time spent clocking (not sleeping)
    double wall_seconds = 0;
};

class Board {
  public:
    Board(const Options &options, VerilatedContext *context)
        : top_(new Vtop{context}), serializer_(options.cycles_per_bit),
          deserializer_(options.cycles_per_bit) {
        tracer_.open(top_.get(), options);
        top_->uart_rx = 1;
        top_->rst = 1;
        for (int i = 0; i < options.reset_cycles; ++i) tick();
        top_->rst = 0;
    }

    ~Board() {
        top_->final();
        tracer_.close();
    }

    // Serves one client until it disconnects or a stop is requested. The bytes it sent before
    // it left still reach the design, as they would on a real line.
    void serve(int client) {
        std::vector<uint8_t> outgoing;
        bool open = true;
        auto started = std::chrono::steady_clock::now();
        while ((open || serializer_.busy()) && !stop_requested) {
            if (open && quiet()) {
                // Nothing to simulate: send what the design said, then sleep until the client
                // says something.
                counters.clocking_seconds += seconds_since(started);
                open = flush(client, outgoing) && wait_readable(client, outgoing);
                tracer_.poll(counters.cycles);
                started = std::chrono::steady_clock::now();
                open = open && receive(client) && flush(client, outgoing);
                continue;
            }
            if (open && (counters.cycles & 0xFF) == 0) {
                tracer_.poll(counters.cycles);
                open = receive(client) && flush(client, outgoing);
            }
            top_->uart_rx = serializer_.level(counters.cycles);
            tick();
            int byte = deserializer_.sample(counters.cycles, top_->uart_tx);
            if (byte >= 0) {
                outgoing.push_back(uint8_t(byte));
                ++counters.bytes_from_design;
            }
        }
        counters.clocking_seconds += seconds_since(started);
    }

    uint64_t framing_errors() const { return deserializer_.framing_errors; }

    Counters counters;

  private:
    static double seconds_since(std::chrono::steady_clock::time_point start) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

    bool quiet() const { return top_->idle && !serializer_.busy() && !deserializer_.busy(); }

    // Queues what the client has sent; false if it is gone.
    bool receive(int client) {
        uint8_t buffer[65536];
        while (true) {
            ssize_t got = recv(client, buffer, sizeof buffer, 0);
            if (got == 0) return false;
            if (got < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
            serializer_.queue.insert(serializer_.queue.end(), buffer, buffer + got);
            counters.bytes_to_design += uint64_t(got);
        }
    }

    void tick() {
        top_->clk = 0;
        top_->eval();
        tracer_.dump(counters.cycles, 0);
        top_->clk = 1;
        top_->eval();
        tracer_.dump(counters.cycles, 1);
        ++counters.cycles;
    }

    // Sends what it can; false if the client is gone.
    static bool flush(int client, std::vector<uint8_t> &outgoing) {
        while (!outgoing.empty()) {
            ssize_t sent = send(client, outgoing.data(), outgoing.size(), MSG_NOSIGNAL);
            if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
            outgoing.erase(outgoing.begin(), outgoing.begin() + sent);
        }
        return true;
    }

    // Sleeps until the client sends something (or the stop signal, or a line on standard input
    // while tracing); false if the client is gone.
    bool wait_readable(int client, std::vector<uint8_t> &outgoing) {
        while (!stop_requested) {
            fd_set readable, writable;
            FD_ZERO(&readable);
            FD_ZERO(&writable);
            FD_SET(client, &readable);
            int control = tracer_.control();
            if (control >= 0) FD_SET(control, &readable);
            if (!outgoing.empty()) FD_SET(client, &writable);
            timeval timeout{0, 100000};
            int ready = select(client + 1, &readable, &writable, nullptr, &timeout);
            if (ready < 0 && errno != EINTR) return false;
            if (ready > 0 && control >= 0 && FD_ISSET(control, &readable)) {
                tracer_.poll(counters.cycles);
            }
            if (ready > 0 && FD_ISSET(client, &writable) && !flush(client, outgoing)) return false;
            if (ready > 0 && FD_ISSET(client, &readable)) return true;
        }
        return true;
    }

    std::unique_ptr<Vtop> top_;
    Serializer serializer_;
    Deserializer deserializer_;
    Tracer tracer_;
};

void write_stats(const std::string &path, const Board &board) {
    if (path.empty()) return;
    FILE *file = std::fopen(path.c_str(), "w");
    if (!file) return;
    const Counters &c = board.counters;
    std::fprintf(file,
                 "{\"cycles\": %llu, \"clocking_seconds\": %.6f, \"wall_seconds\": %.6f, "
                 "\"bytes_to_design\": %llu, \"bytes_from_design\": %llu, "
                 "\"connections\": %llu, \"framing_errors\": %llu}\n",
                 (unsigned long long)c.cycles, c.clocking_seconds, c.wall_seconds,
                 (unsigned long long)c.bytes_to_design, (unsigned long long)c.bytes_from_design,
                 (unsigned long long)c.connections, (unsigned long long)board.framing_errors());
    std::fclose(file);
}

}  // namespace

int main(int argc, char **argv) {
    Options options = parse(argc, argv);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    auto started = std::chrono::steady_clock::now();

    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    Board board(options, context.get());

    int port = 0;
    int listener = listen_on(options.port, &port);
    std::printf("LISTENING %d\n", port);
    std::fflush(stdout);
    while (!stop_requested) {
        int client = accept_client(listener);
        if (client < 0) break;
        ++board.counters.connections;
        board.serve(client);
        close(client);
        if (!options.keep_listening) break;
    }
    close(listener);
    board.counters.wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    write_stats(options.stats_path, board);
    return 0;
}

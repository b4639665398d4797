// A Verilator-built board: clocks the design and bridges its UART pins to a TCP client.
//
// The design (Verilator prefix Vtop) has the ports clk, rst, uart_rx, uart_tx and idle (no rst
// with TERN_POWER_ON_RESET, below). Bytes from the client are sent bit by bit into uart_rx at
// --cycles-per-bit (8N1, each bit edge at the nearest cycle to its ideal time), and bytes
// decoded from uart_tx (sampled in the middle of each bit) go back to the client. When the design reports idle and there is nothing to
// send either way, the harness sleeps in select() instead of clocking: simulated time only
// moves while something happens.
//
// It behaves like a board on a USB serial bridge:
// - the design runs whether or not a client is connected (a run goes on after its host left;
//   what the design sends with no client connected is lost, as on an unread serial port);
// - one client at a time: another one is sent the line "tern-virtual-board: in use: ..." and
//   disconnected;
// - at most --input-buffer bytes from the client wait for the UART (default 4096, the FIFO of
//   an FT2232-class bridge); beyond that the harness stops reading the socket, so TCP's flow
//   control holds the sender back.
//
// Usage: uart_bridge --cycles-per-bit X [--port N] [--input-buffer BYTES] [--reset-cycles N]
//                    [--trace FILE.fst [--trace-from C] [--trace-cycles N]]
// It prints "LISTENING <port>" once it listens on 127.0.0.1. It runs until SIGTERM or SIGINT,
// or until its standard input closes (its owner is gone); then it prints one line
// "STATS {json}" of counters and exits.
//
// Built with -DTERN_POWER_ON_RESET=N, the design has no rst port: it resets itself for its first
// N cycles (sim/rtl/virtual_board.py's power_on_reset, so that no logic hangs on an input but
// the UART line, which Verilator would re-evaluate at every eval), and --reset-cycles must be N.
//
// Built with Verilator's --trace-fst, --trace writes the clock cycles [C, C + N) to an FST file
// (cycle n from n * 10 ns, as in the cocotb runs); without --trace-from nothing is written until
// a line "trace N" on standard input starts a window of N cycles there and then.

#include <algorithm>
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
#include <poll.h>
#include <string>
#include <sys/resource.h>
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
    long input_buffer = 4096;
#ifdef TERN_POWER_ON_RESET
    int reset_cycles = TERN_POWER_ON_RESET;
#else
    int reset_cycles = 8;
#endif
    std::string trace_path;
    long long trace_from = -1;  // -1: when standard input says so
    long long trace_cycles = 100000;
};

[[noreturn]] void usage(const char *message) {
    std::fprintf(stderr, "uart_bridge: %s\nusage: uart_bridge --cycles-per-bit X [--port N] "
                         "[--input-buffer BYTES] [--reset-cycles N] "
                         "[--trace FILE.fst [--trace-from C] [--trace-cycles N]] [+plusarg=value ...]\n", message);
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
        else if (arg == "--input-buffer") options.input_buffer = std::atol(value());
        else if (arg == "--reset-cycles") options.reset_cycles = std::atoi(value());
        else if (arg == "--trace") options.trace_path = value();
        else if (arg == "--trace-from") options.trace_from = std::atoll(value());
        else if (arg == "--trace-cycles") options.trace_cycles = std::atoll(value());
        else if (arg.rfind("+", 0) == 0) continue;  // plusargs: the design's ($value$plusargs)
        else usage(("unknown argument " + arg).c_str());
    }
    if (!(options.cycles_per_bit >= 2)) usage("--cycles-per-bit must be at least 2");
    if (options.input_buffer < 1) usage("--input-buffer must be at least 1");
#ifdef TERN_POWER_ON_RESET
    if (options.reset_cycles != TERN_POWER_ON_RESET) {
        usage(("this build resets itself for " + std::to_string(TERN_POWER_ON_RESET) +
               " cycles (its power-on reset); --reset-cycles cannot change that").c_str());
    }
#endif
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

// The FST waveform of a window of clock cycles.
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
        if (options.trace_from >= 0) window(uint64_t(options.trace_from), count_);
#else
        (void)top;
        (void)options;
#endif
    }

    // The cycles [first, first + count) go to the file.
    void window(uint64_t first, uint64_t count) {
        first_ = first;
        end_ = first + count;
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
#if VM_TRACE
    std::unique_ptr<VerilatedFstC> fst_;
#endif
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
    if (bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address) < 0 || listen(fd, 4) < 0) {
        std::fprintf(stderr, "uart_bridge: cannot listen on 127.0.0.1:%d: %s\n", port,
                     std::strerror(errno));
        std::exit(1);
    }
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
    *bound_port = ntohs(address.sin_port);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

struct Counters {
    uint64_t cycles = 0;
    uint64_t bytes_to_design = 0;
    uint64_t bytes_from_design = 0;
    uint64_t bytes_lost = 0;  // sent by the design with no client to take them
    uint64_t connections = 0;
    uint64_t refused = 0;     // clients turned away while another was connected
    double clocking_seconds = 0;  // wall time spent clocking (not sleeping)
    double wall_seconds = 0;
    double cpu_seconds = 0;       // the process's CPU time (user and system): on a shared
                                  // machine, clocking_seconds also counts time others ran
};

double cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

const char kInUse[] =
    "tern-virtual-board: in use: another client is connected to this virtual board; close it "
    "(another tern command?) and try again\n";

// How long a refused client that sends nothing waits for its notice, and how long its
// connection stays open after the notice.
constexpr std::chrono::seconds kRefusedLinger{1};

class Board {
  public:
    Board(const Options &options, VerilatedContext *context, int listener)
        : top_(new Vtop{context}), serializer_(options.cycles_per_bit),
          deserializer_(options.cycles_per_bit), listener_(listener),
          input_buffer_(size_t(options.input_buffer)) {
        tracer_.open(top_.get(), options);
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        top_->uart_rx = 1;
#ifdef TERN_POWER_ON_RESET
        for (int i = 0; i < options.reset_cycles; ++i) tick();  // the design holds its reset
#else
        top_->rst = 1;
        for (int i = 0; i < options.reset_cycles; ++i) tick();
        top_->rst = 0;
#endif
    }

    ~Board() {
        if (client_ >= 0) close(client_);
        for (const Refused &refused : refused_) close(refused.socket);
        top_->final();
        tracer_.close();
    }

    // Clocks the design (or sleeps while it is idle) and serves the clients until a stop.
    void run() {
        auto started = std::chrono::steady_clock::now();
        while (!stop_requested) {
            if (quiet()) {
                counters.clocking_seconds += seconds_since(started);
                wait_for_news();
                started = std::chrono::steady_clock::now();
                service();
                continue;
            }
            if ((counters.cycles & 0xFF) == 0) service();
            top_->uart_rx = serializer_.level(counters.cycles);
            tick();
            int byte = deserializer_.sample(counters.cycles, top_->uart_tx);
            if (byte >= 0) {
                ++counters.bytes_from_design;
                if (client_ >= 0) outgoing_.push_back(uint8_t(byte));
                else ++counters.bytes_lost;
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

    // Everything but the clock: standard input, new clients, the client's bytes both ways.
    void service() {
        read_control();
        // The client first: one that has just hung up makes way for the one now knocking.
        if (client_ >= 0 && !(receive() && flush())) drop_client();
        accept_clients();
        close_refused();
    }

    // Refused clients: the notice once the client has sent something (or its time is up),
    // then what they send is read and dropped; each is closed when it hangs up or a while after
    // its notice, so that the notice reaches it before the end of the stream.
    void close_refused() {
        auto now = std::chrono::steady_clock::now();
        std::vector<Refused> waiting;
        for (Refused refused : refused_) {
            char buffer[256];
            ssize_t got;
            bool heard = false;
            while ((got = recv(refused.socket, buffer, sizeof buffer, 0)) > 0) heard = true;
            bool gone = got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
            if (!gone && !refused.noticed && (heard || now >= refused.until)) {
                send(refused.socket, kInUse, sizeof kInUse - 1, MSG_NOSIGNAL);
                refused.noticed = true;
                refused.until = now + kRefusedLinger;
            } else if (gone || now >= refused.until) {
                shutdown(refused.socket, SHUT_WR);
                close(refused.socket);
                continue;
            }
            waiting.push_back(refused);
        }
        refused_.swap(waiting);
    }

    // Standard input: "trace N" lines; its end (the owner is gone) stops the board.
    void read_control() {
        char buffer[256];
        ssize_t got;
        while ((got = read(0, buffer, sizeof buffer)) > 0) control_.append(buffer, size_t(got));
        if (got == 0) stop_requested = 1;
        size_t end;
        while ((end = control_.find('\n')) != std::string::npos) {
            std::string line = control_.substr(0, end);
            control_.erase(0, end + 1);
            if (line.rfind("trace ", 0) == 0) {
                tracer_.window(counters.cycles, std::strtoull(line.c_str() + 6, nullptr, 10));
            }
        }
    }

    void accept_clients() {
        int client;
        while ((client = accept(listener_, nullptr, nullptr)) >= 0) {
            if (client_ >= 0) {
                // A board's serial port is one program's at a time: say so, and hang up
                // (close_refused). The notice waits for the client's first bytes: pyserial
                // drops what arrives while it opens a socket:// port.
                fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
                refused_.push_back({client, false,
                                    std::chrono::steady_clock::now() + kRefusedLinger});
                ++counters.refused;
                continue;
            }
            fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
            int one = 1;
            setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            client_ = client;
            ++counters.connections;
        }
    }

    // The client left: the bytes it sent before still reach the design, as on a real line;
    // what the design says from now on is lost.
    void drop_client() {
        close(client_);
        client_ = -1;
        outgoing_.clear();
    }

    // Takes what the client sent, up to the input buffer; false if it is gone. A client that
    // hung up while the buffer is full, or reset the connection, is let go without reading
    // what its socket still holds: a host that died loses its unsent bytes, as it would on a
    // USB serial port. One that closed with a few bytes unsent has them sent first; one that
    // closed normally with megabytes unsent has not hung up as far as TCP can tell (its FIN
    // waits behind them), so it keeps the board until they have passed the UART.
    bool receive() {
        uint8_t buffer[4096];
        bool full = serializer_.queue.size() >= input_buffer_;
        pollfd state{client_, POLLRDHUP, 0};
        if (poll(&state, 1, 0) > 0 &&
            ((state.revents & (POLLHUP | POLLERR)) || (full && (state.revents & POLLRDHUP)))) {
            return false;
        }
        while (serializer_.queue.size() < input_buffer_) {
            size_t room = std::min(sizeof buffer, input_buffer_ - serializer_.queue.size());
            ssize_t got = recv(client_, buffer, room, 0);
            if (got == 0) return false;
            if (got < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
            serializer_.queue.insert(serializer_.queue.end(), buffer, buffer + got);
            counters.bytes_to_design += uint64_t(got);
        }
        return true;
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
    bool flush() {
        while (!outgoing_.empty()) {
            ssize_t sent = send(client_, outgoing_.data(), outgoing_.size(), MSG_NOSIGNAL);
            if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
            outgoing_.erase(outgoing_.begin(), outgoing_.begin() + sent);
        }
        return true;
    }

    // While the design is idle: sleeps until a client arrives or sends, the client can take
    // more of what the design said, standard input says something, or a stop (100 ms at most).
    void wait_for_news() {
        fd_set readable, writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        FD_SET(0, &readable);
        FD_SET(listener_, &readable);
        int highest = listener_;
        if (client_ >= 0) {
            FD_SET(client_, &readable);
            if (!outgoing_.empty()) FD_SET(client_, &writable);
            highest = std::max(highest, client_);
        }
        timeval timeout{0, 100000};
        select(highest + 1, &readable, &writable, nullptr, &timeout);
    }

    std::unique_ptr<Vtop> top_;
    Serializer serializer_;
    Deserializer deserializer_;
    Tracer tracer_;
    int listener_;
    size_t input_buffer_;
    int client_ = -1;
    struct Refused {
        int socket;
        bool noticed;   // the kInUse notice is sent
        std::chrono::steady_clock::time_point until;
    };
    std::vector<Refused> refused_;
    std::vector<uint8_t> outgoing_;
    std::string control_;
};

void print_stats(const Board &board) {
    const Counters &c = board.counters;
    std::printf("STATS {\"cycles\": %llu, \"clocking_seconds\": %.6f, \"wall_seconds\": %.6f, "
                "\"cpu_seconds\": %.6f, "
                "\"bytes_to_design\": %llu, \"bytes_from_design\": %llu, \"bytes_lost\": %llu, "
                "\"connections\": %llu, \"refused\": %llu, \"framing_errors\": %llu}\n",
                (unsigned long long)c.cycles, c.clocking_seconds, c.wall_seconds, c.cpu_seconds,
                (unsigned long long)c.bytes_to_design, (unsigned long long)c.bytes_from_design,
                (unsigned long long)c.bytes_lost, (unsigned long long)c.connections,
                (unsigned long long)c.refused, (unsigned long long)board.framing_errors());
    std::fflush(stdout);
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
    int port = 0;
    int listener = listen_on(options.port, &port);
    {
        Board board(options, context.get(), listener);
        std::printf("LISTENING %d\n", port);
        std::fflush(stdout);
        board.run();
        board.counters.wall_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        board.counters.cpu_seconds = cpu_seconds();
        print_stats(board);
    }
    close(listener);
    return 0;
}

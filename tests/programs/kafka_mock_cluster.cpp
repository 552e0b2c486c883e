// kafka_mock_cluster: a Kafka cluster for tests, without a broker. librdkafka's mock
// cluster (rdkafka_mock.h) listens on 127.0.0.1 and speaks the real protocol, so hopperd,
// kcat and any librdkafka client can produce to and consume from it.
//
//   kafka_mock_cluster --brokers 3 --topic t --partitions 4
//
// prints "bootstraps HOST:PORT,..." once it listens, then reads one command per line on
// stdin and answers one line on stdout ("ok ..." or "error ..."):
//
//   down [ID]                    broker ID (all when omitted) closes its connections and
//                                refuses new ones
//   up [ID]                      accepts again
//   create_topic NAME P          a topic of P partitions
//   topic_error TOPIC CODE       metadata requests for TOPIC fail with Kafka error CODE
//                                (3 unknown topic, 29 not authorized; 0 clears it)
//   produce_errors N CODE        the next N Produce requests fail with Kafka error CODE
//                                (a number, e.g. 10 for MESSAGE_TOO_LARGE; -195 for a
//                                disconnect)
//   consume TOPIC FILE           reads every partition of TOPIC from the beginning to its
//                                end and writes "PARTITION<TAB>OFFSET<TAB>KEY<TAB>VALUE"
//                                lines to FILE (KEY "-" when null); answers "ok COUNT"
//   offsets TOPIC                "ok LOW HIGH": the sums over the partitions of the first
//                                offset kept and the next offset (the mock keeps a bounded
//                                log per partition: HIGH counts every message appended)
//   quit                         (also at end of input: the cluster never outlives its test)
//
// Single-threaded apart from librdkafka's own threads.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Kafka = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

Kafka make_client(rd_kafka_type_t type, const std::vector<std::pair<std::string, std::string>>& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::cerr << "kafka_mock_cluster: " << k << ": " << err << "\n";
      std::exit(2);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    std::cerr << "kafka_mock_cluster: " << err << "\n";
    std::exit(1);
  }
  return Kafka(rk);
}

// The partitions of `topic`, or 0 with `why`.
int partition_count(rd_kafka_t* rk, const std::string& topic, std::string& why) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (err) {
    why = std::string("metadata: ") + rd_kafka_err2str(err);
    return 0;
  }
  int partitions = 0;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (topic == md->topics[i].topic) partitions = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  if (partitions == 0) why = "topic " + topic + " has no partitions";
  return partitions;
}

// Reads all of `topic` into `path`; returns the number of messages, or -1 with `why`.
long consume_all(const std::string& bootstraps, const std::string& topic, const std::string& path, std::string& why) {
  Kafka c = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstraps},
                                             {"group.id", "hopper-test-reader"},
                                             {"enable.auto.commit", "false"},
                                             {"enable.partition.eof", "true"},
                                             {"log_level", "3"}});
  const int partitions = partition_count(c.get(), topic, why);
  if (partitions <= 0) return -1;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  std::vector<int64_t> high(static_cast<std::size_t>(partitions), 0);
  std::vector<bool> done(static_cast<std::size_t>(partitions), true);
  int open = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t lo = 0, hi = 0;
    if ((err = rd_kafka_query_watermark_offsets(c.get(), topic.c_str(), p, &lo, &hi, 10000))) {
      why = std::string("watermarks: ") + rd_kafka_err2str(err);
      rd_kafka_topic_partition_list_destroy(parts);
      return -1;
    }
    high[static_cast<std::size_t>(p)] = hi;
    if (hi > lo) {
      rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
      done[static_cast<std::size_t>(p)] = false;
      ++open;
    }
  }
  rd_kafka_assign(c.get(), parts);
  rd_kafka_topic_partition_list_destroy(parts);
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  long count = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (open > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      why = "timed out reading the topic";
      return -1;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(c.get(), 200);
    if (!m) continue;
    const auto p = static_cast<std::size_t>(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // Only what was there when we asked counts; later messages are not waited for.
      if (!done[p] && m->offset >= high[p]) {
        done[p] = true;
        --open;
      }
    } else if (m->err) {
      why = rd_kafka_message_errstr(m);
      rd_kafka_message_destroy(m);
      return -1;
    } else if (!done[p] && m->offset < high[p]) {
      out << m->partition << '\t' << m->offset << '\t';
      if (m->key) out.write(static_cast<const char*>(m->key), static_cast<std::streamsize>(m->key_len));
      else out << '-';
      out << '\t';
      out.write(static_cast<const char*>(m->payload), static_cast<std::streamsize>(m->len));
      out << '\n';
      ++count;
      if (m->offset + 1 >= high[p]) {
        done[p] = true;
        --open;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(c.get(), nullptr);
  out.flush();
  if (!out) {
    why = "cannot write " + path;
    return -1;
  }
  return count;
}

bool sum_offsets(const std::string& bootstraps, const std::string& topic, int64_t& low, int64_t& high,
                 std::string& why) {
  Kafka c = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstraps}, {"group.id", "hopper-test-reader"},
                                             {"log_level", "3"}});
  const int partitions = partition_count(c.get(), topic, why);
  if (partitions <= 0) return false;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  low = high = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t lo = 0, hi = 0;
    if ((err = rd_kafka_query_watermark_offsets(c.get(), topic.c_str(), p, &lo, &hi, 10000))) {
      why = std::string("watermarks: ") + rd_kafka_err2str(err);
      return false;
    }
    low += lo;
    high += hi;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int brokers = 3, partitions = 4;
  std::string topic = "telemetry";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--brokers") brokers = std::atoi(argv[i + 1]);
    else if (a == "--partitions") partitions = std::atoi(argv[i + 1]);
    else if (a == "--topic") topic = argv[i + 1];
    else {
      std::cerr << "usage: kafka_mock_cluster [--brokers N] [--topic NAME] [--partitions P]\n";
      return 2;
    }
  }
  // The cluster lives in (and is served by the threads of) this client instance.
  Kafka host = make_client(RD_KAFKA_PRODUCER, {{"log_level", "3"}});
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(host.get(), brokers);
  if (!cluster) {
    std::cerr << "kafka_mock_cluster: cannot create the mock cluster\n";
    return 1;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, topic.c_str(), partitions, 1)) {
    std::cerr << "kafka_mock_cluster: create topic: " << rd_kafka_err2str(err) << "\n";
    return 1;
  }
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);
  std::cout << "bootstraps " << bootstraps << std::endl;

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd.empty()) continue;
    if (cmd == "quit") break;
    if (cmd == "down" || cmd == "up") {
      int id = -1;
      in >> id;
      const rd_kafka_resp_err_t err =
          cmd == "down" ? rd_kafka_mock_broker_set_down(cluster, id) : rd_kafka_mock_broker_set_up(cluster, id);
      std::cout << (err ? std::string("error ") + rd_kafka_err2str(err) : std::string("ok")) << std::endl;
    } else if (cmd == "create_topic") {
      std::string name;
      int p = 0;
      if (!(in >> name >> p) || p < 1) {
        std::cout << "error usage: create_topic NAME PARTITIONS" << std::endl;
        continue;
      }
      const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, name.c_str(), p, 1);
      std::cout << (err ? std::string("error ") + rd_kafka_err2str(err) : std::string("ok")) << std::endl;
    } else if (cmd == "topic_error") {
      std::string name;
      int code = 0;
      if (!(in >> name >> code)) {
        std::cout << "error usage: topic_error TOPIC CODE" << std::endl;
        continue;
      }
      rd_kafka_mock_topic_set_error(cluster, name.c_str(), static_cast<rd_kafka_resp_err_t>(code));
      std::cout << "ok" << std::endl;
    } else if (cmd == "produce_errors") {
      std::size_t n = 0;
      int code = 0;
      if (!(in >> n >> code) || n == 0 || n > 100000) {
        std::cout << "error usage: produce_errors N CODE" << std::endl;
        continue;
      }
      std::vector<rd_kafka_resp_err_t> errs(n, static_cast<rd_kafka_resp_err_t>(code));
      rd_kafka_mock_push_request_errors_array(cluster, 0 /* Produce */, n, errs.data());
      std::cout << "ok" << std::endl;
    } else if (cmd == "offsets") {
      std::string t, why;
      if (!(in >> t)) {
        std::cout << "error usage: offsets TOPIC" << std::endl;
        continue;
      }
      int64_t low = 0, high = 0;
      if (!sum_offsets(bootstraps, t, low, high, why)) std::cout << "error " << why << std::endl;
      else std::cout << "ok " << low << " " << high << std::endl;
    } else if (cmd == "consume") {
      std::string t, path, why;
      if (!(in >> t >> path)) {
        std::cout << "error usage: consume TOPIC FILE" << std::endl;
        continue;
      }
      const long n = consume_all(bootstraps, t, path, why);
      std::cout << (n < 0 ? "error " + why : "ok " + std::to_string(n)) << std::endl;
    } else {
      std::cout << "error unknown command " << cmd << std::endl;
    }
  }
  rd_kafka_mock_cluster_destroy(cluster);
  return 0;
}
